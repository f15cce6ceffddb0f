"""Lightning training: module, callbacks, run folder, benchmark."""
