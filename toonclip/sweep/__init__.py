"""Sweeps over (architecture, backbone) pairs: one training process per member, one index.

    toonclip sweep experiments/arch_backbone.yaml [launcher=parallel workers=2]

See `spec` (the file format), `runner` (skip/retry logic), `launch` (launchers) and `index`.
"""

from toonclip.sweep.runner import run_sweep
from toonclip.sweep.spec import Member, Sweep, load_sweep

__all__ = ["Member", "Sweep", "load_sweep", "run_sweep"]
