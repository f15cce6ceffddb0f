"""What a run's network costs at 256 px: parameters, GFLOPs and CPU latency, measured once per
network.

GFLOPs are counted by `toonclip.models.cost.count_gflops` on one 1x3x256x256 forward
pass (FLOPs = 2 x multiply-adds). Latency is the median of a few timed CPU forward passes at
256 px after one warm-up pass, with a fixed torch thread count, so runs are timed alike.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from toonclip.compare.runs import Run, cfg_get
from toonclip.inference import nhwc
from toonclip.models.cost import count_gflops
from toonclip.models.factory import count_parameters

COST_SIZE = 256


@dataclass
class Cost:
    params: int | None = None
    gflops: float | None = None
    latency_ms: float | None = None
    onnx: dict | None = None  # compare latency=onnx: see compare/onnx_cost.py


def latency_ms(model: nn.Module, size: int = COST_SIZE, runs: int = 5, threads: int = 2) -> float:
    """Median wall time (ms) of `runs` CPU forward passes on (1, 3, size, size), after a warm-up,
    in NHWC memory as `predict` and the other commands run it (inference.nhwc)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = nhwc(model)
        x = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode():
            model(x)  # warm-up: first call allocates buffers and picks kernels
            for _ in range(max(1, runs)):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000
    finally:
        torch.set_num_threads(previous)


def measure(model: nn.Module, latency_runs: int, threads: int) -> Cost:
    """Parameters, GFLOPs at 256 px and (unless latency_runs == 0) CPU latency at 256 px."""
    model = model.cpu().float().eval()
    cost = Cost(params=count_parameters(model), gflops=count_gflops(model, COST_SIZE))
    if latency_runs > 0:
        cost.latency_ms = latency_ms(model, runs=latency_runs, threads=threads)
    return cost


def cpu_name() -> str:
    """The CPU's model name, for the latency column's note; else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_cost(run: Run, generator, cache: dict, latency_runs: int, threads: int, calib=None) -> Cost:
    """What the run's network costs: from `generator` (its loaded checkpoint), else built from
    the run's names with random weights; an empty Cost when neither can be had. `calib`: faces
    for compare latency=onnx. Cost depends only on the network, so runs of one network share
    one measurement through `cache`."""
    width = cfg_get(run.cfg, "model.decoder_width") or 1.0
    norm = cfg_get(run.cfg, "model.decoder_norm") or "batchnorm"
    key = (run.arch, run.encoder, float(width), norm)
    if key in cache:
        return cache[key]
    model = generator
    if model is None and run.arch and run.encoder:
        from toonclip.models import build_generator

        try:
            model = build_generator(
                run.arch, run.encoder, weights="none", decoder_width=float(width), decoder_norm=norm
            )
        except Exception:  # noqa: BLE001 - a bad name or pair: the run has no cost, not a crash
            model = None
    cost = measure(model, latency_runs, threads) if model is not None else Cost()
    if calib is not None and model is not None:
        from toonclip.compare.onnx_cost import onnx_cost

        cost.onnx = onnx_cost(model, calib, threads, runs=max(latency_runs, 1) * 4)
    cache[key] = cost
    return cost
