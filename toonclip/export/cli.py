"""`toonclip export ckpt=... format=onnx|coreml|tflite precision=fp32|fp16|int8 size=N out=FILE`.

Every export is checked before the command says it worked: fp32 against PyTorch (max |diff| on
the outputs, fails above `atol`), fp16/int8 against the fp32 model (PSNR on the calibration faces,
fails below `min_psnr`). Faces come from `calib=DIR`; without it a few synthetic faces are used
for the fp32 check (int8 always needs real ones).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import torch

from toonclip.errors import ConfigError, ToonclipError

log = logging.getLogger(__name__)

OPTIONS = (
    "ckpt",
    "format",
    "precision",
    "size",
    "out",
    "opset",
    "dynamic",
    "bake",
    "calib",
    "calib_n",
    "atol",
    "min_psnr",
    "threads",
)
FORMATS = {"onnx": ".onnx", "coreml": ".mlpackage", "tflite": ".tflite"}
MIN_PSNR = {"fp16": 35.0, "int8": 20.0}  # dB against fp32: guards against a broken conversion


def _mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


def cli(argv: list[str]) -> int:
    from toonclip.cli import parse_options
    from toonclip.inference import load_checkpoint, resolve_checkpoint

    _, opts = parse_options(argv, "toonclip export", OPTIONS, paths=False)
    if "ckpt" not in opts:
        raise ConfigError("missing ckpt=FILE: toonclip export ckpt=RUN/checkpoints/best.ckpt")
    fmt = opts.get("format", "onnx").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: use one of {', '.join(FORMATS)}")
    precision = opts.get("precision", "fp16" if fmt == "coreml" else "fp32").lower()
    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"precision={precision}: use fp32, fp16 or int8")
    onnx_only = sorted(k for k in ("opset", "dynamic", "bake") if k in opts)
    if fmt != "onnx" and onnx_only:
        raise ConfigError(f"{', '.join(onnx_only)}= only apply to format=onnx (got format={fmt})")
    if fmt == "coreml" and precision == "int8":
        raise ConfigError("format=coreml supports precision=fp16 or fp32")
    if precision == "int8" and "calib" not in opts:
        raise ConfigError("precision=int8 needs calib=DIR: a folder of real face images")
    if fmt == "tflite":
        from toonclip.export.tflite import require_litert

        require_litert()  # fail before the slow checkpoint load
    if fmt == "onnx":
        from toonclip.export.onnx import require_onnx

        require_onnx()

    ckpt = resolve_checkpoint(opts["ckpt"])
    generator, cfg = load_checkpoint(ckpt)
    size = int(opts.get("size", cfg.data.size))
    if size <= 0 or size % 32:
        raise ConfigError(f"size={size}: must be a positive multiple of 32")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    default = run_dir / "export" / f"toonclip_{size}_{precision}{FORMATS[fmt]}"
    out = Path(opts.get("out") or default)
    if out.suffix.lower() != FORMATS[fmt]:
        raise ConfigError(f"out={out}: format={fmt} writes a {FORMATS[fmt]} file")
    if "threads" in opts:
        torch.set_num_threads(int(opts["threads"]))

    from toonclip.export.quantize import load_faces, synthetic_faces

    n = int(opts.get("calib_n", 16))
    if "calib" in opts:
        faces, where = load_faces(opts["calib"], size, n), f"{opts['calib']}"
    else:
        faces, where = synthetic_faces(size, 4), "synthetic faces (pass calib=DIR for real ones)"
    print(f"checking on {len(faces)} images from {where}")
    atol = float(opts.get("atol", 1e-3))
    min_psnr = float(opts.get("min_psnr", MIN_PSNR.get(precision, 0.0)))

    if fmt == "onnx":
        _export_onnx(generator, cfg, out, size, precision, opts, faces, atol, min_psnr)
    elif fmt == "coreml":
        from toonclip.export.coreml import export_coreml, predict_check, validate_coreml

        export_coreml(generator, out, size, precision)
        summary = validate_coreml(out, size)
        print(
            f"wrote {out} ({_mb(out):.1f} MB): " + "; ".join(f"{k} {v}" for k, v in summary.items())
        )
        print(predict_check(out, generator, faces))
    else:
        _export_tflite(generator, out, size, precision, faces, atol, min_psnr)
    return 0


def _export_onnx(generator, cfg, out, size, precision, opts, faces, atol, min_psnr) -> None:
    from toonclip.cli import parse_bool
    from toonclip.export.onnx import export_onnx, op_types, parity
    from toonclip.export.quantize import to_fp16, to_int8
    from toonclip.export.runtime import load_model

    bake = parse_bool("bake", opts.get("bake", "false"))
    dynamic = parse_bool("dynamic", opts.get("dynamic", "false"))
    meta = {"arch": str(cfg.model.arch), "encoder": str(cfg.model.encoder)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = out if precision == "fp32" else Path(tmp) / "fp32.onnx"
        export_onnx(generator, fp32, size, int(opts.get("opset", 18)), dynamic, bake, meta)
        ops = op_types(fp32)
        hard = sorted(ops & {"HardSwish", "HardSigmoid"})
        diff = parity(generator, fp32, faces)
        # A baked graph returns uint8: a value that sits on a rounding boundary may round either
        # way in the two runtimes, one grey level (1/255) apart, whatever the float error.
        limit = max(atol, 1 / 255 + 1e-6) if bake else atol
        print(
            f"fp32 ONNX vs PyTorch: max |diff| {diff:.2e} (atol {limit:g}"
            f"{', one grey level: uint8 output' if limit > atol else ''}); native ops: "
            f"{', '.join(hard) or 'none'}"
        )
        if not diff <= limit:
            raise ToonclipError(
                f"ONNX parity failed: max |diff| {diff:.2e} > atol={limit:g} "
                f"({fp32}); re-export with another opset= or raise atol="
            )
        if precision != "fp32":
            convert = to_fp16 if precision == "fp16" else lambda s, d: to_int8(s, d, faces, bake)
            out.parent.mkdir(parents=True, exist_ok=True)
            convert(fp32, out)
            _report_psnr(
                load_model(fp32).generator,
                load_model(out).generator,
                faces,
                precision,
                min_psnr,
                out,
                _mb(fp32),
            )
    print(
        f"wrote {out} ({_mb(out):.1f} MB; input 'image' "
        f"{'uint8 NHWC' if bake else 'float NCHW [0,1]'}, "
        f"{'dynamic H/W (multiples of 32)' if dynamic else f'{size}x{size}'})"
    )


def _report_psnr(ref_gen, gen, faces, precision, min_psnr, out, ref_mb=None) -> float:
    from toonclip.export.onnx import psnr

    with torch.no_grad():
        scores = [psnr(gen(x), ref_gen(x)) for x in faces.split(1)]
    mean = sum(scores) / len(scores)
    print(
        f"{precision} vs fp32 on {len(faces)} faces: PSNR mean {mean:.1f} dB, worst "
        f"{min(scores):.1f} dB; {_mb(out):.1f} MB" + (f" vs {ref_mb:.1f} MB fp32" if ref_mb else "")
    )
    if not (mean >= min_psnr or math.isinf(mean)):
        raise ToonclipError(
            f"{precision} output PSNR {mean:.1f} dB < min_psnr={min_psnr:g} ({out}); "
            "calibrate on more faces (calib_n=) or lower min_psnr="
        )
    return mean


def _export_tflite(generator, out, size, precision, faces, atol, min_psnr) -> None:
    from toonclip.export.bench import time_call
    from toonclip.export.runtime import load_model
    from toonclip.export.tflite import export_tflite

    export_tflite(generator, out, size, precision, faces if precision == "int8" else None)
    lite = load_model(out, threads=torch.get_num_threads())
    if precision == "fp32":
        with torch.no_grad():
            diff = max(
                float((generator(x) - lite.generator(x)).abs().max()) for x in faces.split(1)
            )
        print(f"fp32 TFLite vs PyTorch: max |diff| {diff:.2e} (atol {atol:g})")
        if not diff <= atol:
            raise ToonclipError(f"TFLite parity failed: max |diff| {diff:.2e} > atol={atol:g}")
    else:
        _report_psnr(generator, lite.generator, faces, precision, min_psnr, out)
    ms = time_call(lite.generator.prepare(faces[:1]), warmup=2, runs=5)
    print(f"wrote {out} ({_mb(out):.1f} MB); LiteRT interpreter {size}px: {ms:.1f} ms median")
