"""`compare latency=onnx`: each run exported to ONNX fp32 and int8 and timed in ONNX Runtime.

This is what a phone or a live demo runs, and where a small student's speed shows: PyTorch eager
on a CPU adds per-op overhead that hides the difference between a 0.5 M and a 7 M network.
Per network: fp32 and int8 (static QDQ, calibrated on the comparison's faces) file sizes in MB,
and the median ms per 256 px frame (batch 1, `threads` intra-op threads, after warm-up).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toonclip.compare.cost import COST_SIZE


def time_session(path: Path, size: int, threads: int, runs: int) -> float:
    """Median ms of `runs` ONNX Runtime calls on one (1, 3, size, size) frame, after 3 warm-ups."""
    from toonclip.export.runtime import ort_session

    # spin=True: back-to-back frames, as a video loop runs them (the bench command does the same)
    session = ort_session(path, threads=threads, spin=True)
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def onnx_cost(
    generator: nn.Module, calib: torch.Tensor, threads: int = 2, runs: int = 20
) -> dict[str, float]:
    """{"onnx_fp32_mb", "onnx_int8_mb", "onnx_fp32_ms", "onnx_int8_ms"} of one generator.

    calib: (N, 3, S, S) float [0, 1] faces for the int8 calibration (S a multiple of 32).
    """
    from toonclip.export.onnx import export_onnx
    from toonclip.export.quantize import to_int8

    with tempfile.TemporaryDirectory(prefix="toonclip-cost-") as tmp:
        fp32 = export_onnx(
            generator.cpu().float().eval(), Path(tmp) / "fp32.onnx", calib.shape[-1], dynamic=True
        )
        int8 = to_int8(fp32, Path(tmp) / "int8.onnx", calib)
        return {
            "onnx_fp32_mb": fp32.stat().st_size / 1e6,
            "onnx_int8_mb": int8.stat().st_size / 1e6,
            "onnx_fp32_ms": time_session(fp32, COST_SIZE, threads, runs),
            "onnx_int8_ms": time_session(int8, COST_SIZE, threads, runs),
        }
