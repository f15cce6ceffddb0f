"""What a network costs per image: forward GFLOPs, counted alike for every report (summary.json
and the model summary a run prints: count_gflops_direct; the compare page: count_gflops).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one (1, 3, size, size)
forward pass in eval mode, FLOPs = 2 x multiply-adds (biases and elementwise ops not counted).
The two functions give the same figure (tests/test_compare.py); they differ in what they cost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_gflops(model: nn.Module, size: int = 256) -> float:
    """Forward GFLOPs of `model` (eval mode) on one (1, 3, size, size) input.

    Counted on a copy on the meta device: same FLOPs, no arithmetic (a CPU pass of a large
    network at 256 px takes seconds) and no device memory, wherever the model lives. Falls back
    to a real pass on the model's own device if an op has no meta kernel. A `torch.compile`d
    model is counted through the module it wraps (compiling for one count would cost minutes).
    """
    model = getattr(model, "_orig_mod", model)
    try:
        meta = copy.deepcopy(model).to("meta").eval()
    except Exception:  # noqa: BLE001 - e.g. a module that cannot be copied
        return count_gflops_direct(model, size)
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            meta(torch.empty(1, 3, size, size, device="meta"))
    except (NotImplementedError, RuntimeError):
        return count_gflops_direct(model, size)
    return counter.get_total_flops() / 1e9


def count_gflops_direct(model: nn.Module, size: int = 256) -> float:
    """count_gflops by a real forward pass on the model's device and dtype (its mode restored).

    Cheaper than the meta copy for a network at hand at its training size (0.1 s against
    0.6 s for the default generator at 32 px on the CPU, 0.5 against 0.75 at 256): what a
    training run counts its own generator with."""
    model = getattr(model, "_orig_mod", model)
    param = next(model.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else ("cpu", torch.float32)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            model(torch.rand(1, 3, size, size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
