"""Regions that stay in the input's precision under mixed precision (`trainer.precision=
bf16-mixed` or `16-mixed`): autocast runs every convolution in half precision whatever its
inputs' dtype, which SSIM's variances and the face the blurred skip adds back cannot afford
(docs/recipe.md, "Mixed precision")."""

from __future__ import annotations

import contextlib

import torch

# Devices autocast knows; on others (the meta device FLOPs are counted on) there is nothing to
# turn off, and torch.autocast would raise.
_AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu", "xla")


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context in which autocast is off for `device`'s type (a no-op where it is off already)."""
    device_type = torch.device(device).type
    if device_type in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
