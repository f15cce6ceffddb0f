"""`toonclip bench MODEL... [size=256,512] [threads=2]`: the size / latency / quality table.

One row per model file or checkpoint: format, precision, size in MB, median latency (ms) and fps
at each input size after warm-up, and the output PSNR against the fp32 PyTorch output (the first
checkpoint given, or `ref=CKPT`) on faces from `faces=DIR` (synthetic faces otherwise). A ratio
line compares ONNX Runtime fp32/int8 with PyTorch eager measured in the same run. `onnx=fp32,int8`
also exports those variants of the reference checkpoint first (dynamic H/W; int8 calibrated on
`calib=DIR`, default the `faces` folder) so one command gives the whole table.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from toonclip.errors import ConfigError, DataError
from toonclip.export.onnx import psnr
from toonclip.export.quantize import load_faces, synthetic_faces
from toonclip.export.runtime import LoadedModel, load_model

log = logging.getLogger(__name__)

OPTIONS = (
    "size",
    "threads",
    "warmup",
    "runs",
    "faces",
    "n_faces",
    "ref",
    "onnx",
    "opset",
    "calib",
    "out",
)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"size={text}: give sizes as integers, e.g. size=256,512") from exc
    if not sizes or any(s <= 0 or s % 32 for s in sizes):
        raise ConfigError(f"size={text}: sizes must be positive multiples of 32, e.g. 256,512")
    return sizes


def time_call(fn, warmup: int = 3, runs: int = 10) -> float:
    """Median wall time of `fn()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def model_mb(model: LoadedModel) -> float:
    if model.fmt == "torch":
        tensors = list(model.generator.parameters()) + list(model.generator.buffers())
        return sum(t.numel() * t.element_size() for t in tensors) / 1e6
    if model.path.is_dir():
        return sum(p.stat().st_size for p in model.path.rglob("*") if p.is_file()) / 1e6
    return model.path.stat().st_size / 1e6


def runner(model: LoadedModel, x: torch.Tensor):
    prepare = getattr(model.generator, "prepare", None)
    if prepare is not None:
        return prepare(x)

    def run():
        with torch.inference_mode():
            model.generator(x)

    return run


def bench_model(model, sizes, faces, refs, warmup, runs) -> dict:
    """One table row: latency per size, PSNR vs the reference outputs at the first usable size."""
    row = {
        "model": model.name,
        "format": model.fmt,
        "precision": model.precision,
        "mb": round(model_mb(model), 2),
        "latency_ms": {},
        "fps": {},
        "psnr_db": {},
    }
    for size in sizes:
        if model.fixed_size is not None and size != model.fixed_size:
            continue  # a fixed-shape graph cannot run at this size
        x = F.interpolate(faces, size=(size, size), mode="bilinear", antialias=True)
        ms = time_call(runner(model, x[:1]), warmup, runs)
        row["latency_ms"][size], row["fps"][size] = round(ms, 2), round(1000 / ms, 1)
        if size in refs:
            with torch.inference_mode():
                row["psnr_db"][size] = round(psnr(model.generator(x), refs[size]), 2)
    return row


def markdown(rows: list[dict], sizes: list[int], threads: int) -> str:
    head = ["model", "format", "precision", "MB"]
    for s in sizes:
        head += [f"{s}px ms", f"{s}px fps"]
    head += [f"PSNR dB @{sizes[0]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["format"], r["precision"], f"{r['mb']:.1f}"]
        for s in sizes:
            ms = r["latency_ms"].get(s)
            cells += [f"{ms:.1f}", f"{r['fps'][s]:.1f}"] if ms else ["n/a", "n/a"]
        p = r["psnr_db"].get(sizes[0])
        cells.append("ref" if r.get("is_ref") else ("n/a" if p is None else f"{p:.1f}"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"CPU threads: {threads}; median of timed runs after warm-up; batch 1."]
    lines += ratio_lines(rows, sizes)
    return "\n".join(lines)


def ratio_lines(rows: list[dict], sizes: list[int]) -> list[str]:
    """'ORT fp32 vs PyTorch eager' speed-ups, from rows measured in this same run."""
    torch_row = next((r for r in rows if r["format"] == "torch"), None)
    out = []
    for prec in ("fp32", "int8"):
        ort_row = next((r for r in rows if r["format"] == "onnx" and r["precision"] == prec), None)
        if torch_row is None or ort_row is None:
            continue
        parts = [
            f"{s}px {torch_row['latency_ms'][s] / ort_row['latency_ms'][s]:.2f}x"
            for s in sizes
            if s in torch_row["latency_ms"] and s in ort_row["latency_ms"]
        ]
        if parts:
            out.append(f"ONNX Runtime {prec} vs PyTorch eager (speed-up): " + ", ".join(parts))
    return out


def export_variants(ckpt: LoadedModel, variants: list[str], folder: Path, calib, opset=18):
    """Export ONNX fp32/fp16/int8 of a checkpoint with dynamic H/W into `folder`."""
    from toonclip.export.onnx import export_onnx
    from toonclip.export.quantize import to_fp16, to_int8

    bad = set(variants) - {"fp32", "fp16", "int8"}
    if bad:
        raise ConfigError(f"onnx={','.join(variants)}: variants are fp32, fp16, int8")
    fp32 = folder / "toonclip_fp32.onnx"
    export_onnx(ckpt.generator, fp32, ckpt.size, opset=opset, dynamic=True)
    paths = {"fp32": fp32}
    if "fp16" in variants:
        paths["fp16"] = to_fp16(fp32, folder / "toonclip_fp16.onnx")
    if "int8" in variants:
        if calib is None:
            raise ConfigError(
                "onnx=...int8 needs calib=DIR (or faces=DIR): real faces to calibrate"
            )
        paths["int8"] = to_int8(fp32, folder / "toonclip_int8.onnx", load_faces(calib, ckpt.size))
    return [paths[v] for v in variants]


def cli(argv: list[str]) -> int:
    from toonclip.cli import parse_options

    paths, opts = parse_options(argv, "toonclip bench", OPTIONS)
    if not paths:
        raise ConfigError("usage: toonclip bench MODEL... [size=256,512] [threads=2]")
    sizes, threads = parse_sizes(opts.get("size", "256,512")), int(opts.get("threads", 2))
    warmup, runs = int(opts.get("warmup", 3)), int(opts.get("runs", 10))
    torch.set_num_threads(threads)
    models = [load_model(p, threads, spin=True) for p in paths]
    ref_path = opts.get("ref")
    ref = (
        load_model(ref_path, threads)
        if ref_path
        else next((m for m in models if m.fmt == "torch"), None)
    )
    if ref is not None and ref.fmt != "torch":
        raise ConfigError(f"ref={ref_path}: the reference must be a checkpoint (fp32 PyTorch)")
    n = int(opts.get("n_faces", 4))
    if "faces" in opts:
        faces = load_faces(opts["faces"], max(sizes), n)
    else:
        faces = synthetic_faces(max(sizes), n)
        log.info("no faces=DIR given: PSNR is measured on synthetic faces")
    with tempfile.TemporaryDirectory() as tmp:
        if "onnx" in opts:
            if ref is None:
                raise DataError("onnx=... exports from a checkpoint: give one as MODEL or ref=")
            folder = Path(opts.get("out", tmp))
            folder.mkdir(parents=True, exist_ok=True)
            variants = [v.strip() for v in opts["onnx"].split(",") if v.strip()]
            calib = opts.get("calib", opts.get("faces"))
            opset = int(opts.get("opset", 18))
            for path in export_variants(ref, variants, folder, calib, opset):
                models.append(load_model(path, threads, spin=True))
        refs = {}
        if ref is not None:
            with torch.inference_mode():
                x = F.interpolate(faces, size=(sizes[0],) * 2, mode="bilinear", antialias=True)
                refs[sizes[0]] = ref.generator(x)
        rows = []
        for model in models:
            log.info("benchmarking %s (%s %s)", model.name, model.fmt, model.precision)
            row = bench_model(model, sizes, faces, refs, warmup, runs)
            row["is_ref"] = model is ref
            rows.append(row)
    table = markdown(rows, sizes, threads)
    print(table)
    if "out" in opts:
        out = Path(opts["out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(table + "\n")
        meta = {"threads": threads, "sizes": sizes, "warmup": warmup, "runs": runs}
        (out / "bench.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
        print(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0
