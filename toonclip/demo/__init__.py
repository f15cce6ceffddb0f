"""A local Gradio demo: `toonclip demo MODEL...` (see `toonclip.demo.app`)."""
