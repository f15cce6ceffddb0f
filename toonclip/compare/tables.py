"""The metrics table: one row per run (its figures and its network's cost, compare/cost.py), as
CSV, Markdown and the page's sortable table, with notes on how each column was measured.
"""

from __future__ import annotations

import csv
from pathlib import Path

from toonclip.compare.cost import Cost
from toonclip.compare.runs import Run

# (key, header) in table order; `key` is the CSV column.
COLUMNS = [
    ("run", "run"),
    ("arch", "arch"),
    ("encoder", "encoder"),
    ("status", "status"),
    ("params", "params (M)"),
    ("gflops_256", "GFLOPs @256"),
    ("val_psnr", "PSNR (dB)"),
    ("val_ssim", "SSIM"),
    ("val_l1", "L1"),
    ("val_loss", "val loss"),
    ("eval_psnr", "eval PSNR (dB)"),
    ("eval_ssim", "eval SSIM"),
    ("identity_psnr", "identity PSNR (dB)"),
    ("gain_psnr", "gain PSNR (dB)"),
    ("gain_ssim", "gain SSIM"),
    ("eval_source", "eval from"),
    ("train_size", "train px"),
    ("train_time_s", "train time (s)"),
    ("train_img_per_s", "train img/s"),
    ("effective_img_per_s", "effective img/s"),
    ("val_swing_db", "val PSNR swing (dB)"),
    ("latency_ms_256", "CPU latency @256 (ms)"),
    ("onnx_fp32_ms", "ORT fp32 @256 (ms)"),
    ("onnx_int8_ms", "ORT int8 @256 (ms)"),
    ("onnx_int8_fps", "ORT int8 fps"),
    ("onnx_fp32_mb", "fp32 MB"),
    ("onnx_int8_mb", "int8 MB"),
    ("teacher_psnr", "teacher PSNR (dB)"),
    ("vs_teacher_psnr", "vs teacher (dB)"),
    ("error", "error"),
]
# Shown only when some run has them: ONNX figures (compare latency=onnx), distillation figures.
OPTIONAL = (
    "onnx_fp32_ms",
    "onnx_int8_ms",
    "onnx_int8_fps",
    "onnx_fp32_mb",
    "onnx_int8_mb",
    "teacher_psnr",
    "vs_teacher_psnr",
)
_FORMATS = {
    "params": lambda v: f"{v / 1e6:.2f}",
    "gflops_256": "{:.2f}".format,
    "val_psnr": "{:.2f}".format,
    "val_ssim": "{:.3f}".format,
    "val_l1": "{:.4f}".format,
    "val_loss": "{:.4f}".format,
    "eval_psnr": "{:.2f}".format,
    "eval_ssim": "{:.3f}".format,
    "identity_psnr": "{:.2f}".format,
    "gain_psnr": "{:+.2f}".format,
    "gain_ssim": "{:+.3f}".format,
    "train_time_s": "{:.0f}".format,
    "train_img_per_s": "{:.1f}".format,
    "effective_img_per_s": "{:.1f}".format,
    "val_swing_db": "{:.2f}".format,
    "latency_ms_256": "{:.0f}".format,
    "onnx_fp32_ms": "{:.1f}".format,
    "onnx_int8_ms": "{:.1f}".format,
    "onnx_int8_fps": "{:.0f}".format,
    "onnx_fp32_mb": "{:.2f}".format,
    "onnx_int8_mb": "{:.2f}".format,
    "teacher_psnr": "{:.2f}".format,
    "vs_teacher_psnr": "{:+.2f}".format,
}
# Shown as "-" when unknown: runs older than `toonclip eval` and summary "final"/"identity".
EVAL_COLUMNS = ("eval_psnr", "eval_ssim", "identity_psnr", "gain_psnr", "gain_ssim", "eval_source")


def columns(rows: list[dict]) -> list[tuple[str, str]]:
    """COLUMNS without the OPTIONAL ones no row has a value for."""
    return [
        (k, h) for k, h in COLUMNS if k not in OPTIONAL or any(r.get(k) is not None for r in rows)
    ]


def row(run: Run, cost: Cost) -> dict:
    """The run's table row (raw values; None where unknown)."""
    best, s, ev = run.best, run.summary, run.evaluation
    onnx = cost.onnx or {}
    teacher = s.get("teacher") or {}
    return {
        "run": run.name,
        "arch": run.arch,
        "encoder": run.encoder,
        "status": run.status,
        "params": cost.params if cost.params is not None else s.get("params"),
        "gflops_256": cost.gflops,
        "val_psnr": best.get("val/psnr"),
        "val_ssim": best.get("val/ssim"),
        "val_l1": best.get("val/l1"),
        "val_loss": best.get("val/loss"),
        "eval_psnr": ev.get("psnr"),
        "eval_ssim": ev.get("ssim"),
        "identity_psnr": ev.get("identity_psnr"),
        "gain_psnr": ev.get("gain_psnr"),
        "gain_ssim": ev.get("gain_ssim"),
        "eval_source": ev.get("source"),
        "train_size": run.size,
        "train_time_s": s.get("train_time_s"),
        "train_img_per_s": s.get("train_img_per_s"),
        # images trained / wall seconds of fit (validation and checkpoints included)
        "effective_img_per_s": s.get("effective_img_per_s"),
        # the largest val PSNR change between validations after the first tenth of the run
        "val_swing_db": (run.stability or {}).get("max_change_db"),
        "latency_ms_256": cost.latency_ms,
        **{
            k: onnx.get(k) for k in ("onnx_fp32_ms", "onnx_int8_ms", "onnx_fp32_mb", "onnx_int8_mb")
        },
        "onnx_int8_fps": 1000 / onnx["onnx_int8_ms"] if onnx.get("onnx_int8_ms") else None,
        # distillation: the teacher on the same val pairs, and how far below it (final figures)
        "teacher_psnr": teacher.get("psnr"),
        "vs_teacher_psnr": -teacher["drop_psnr"] if teacher.get("drop_psnr") is not None else None,
        "error": run.error if run.failed else None,
    }


def display(key: str, value) -> str:
    """A table cell as text ('' for unknown, '-' for an unknown eval figure)."""
    if value is None or value == "":
        return "-" if key in EVAL_COLUMNS else ""
    fmt = _FORMATS.get(key)
    if fmt and isinstance(value, int | float):
        return fmt(value)
    return " ".join(str(value).split())


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        cols = columns(rows)
        writer = csv.DictWriter(f, fieldnames=[k for k, _ in cols])
        writer.writeheader()
        writer.writerows([{k: ("" if r.get(k) is None else r[k]) for k, _ in cols} for r in rows])


def write_markdown(rows: list[dict], path: Path, note: str = "") -> None:
    cols = columns(rows)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [display(k, r.get(k)).replace("|", "\\|") for k, _ in cols]
        if len(cells[-1]) > 160:  # the error line; metrics.csv keeps all of it
            cells[-1] = cells[-1][:157] + "..."
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + ("\n\n" + note if note else "") + "\n", encoding="utf-8")


def table_notes(
    latency: str, latency_runs: int, threads: int, tile: int, cpu: str, calibrated_on_faces: bool
) -> list[str]:
    """What each column of the table means and how it was measured (metrics.md, index.html)."""
    onnx = (
        f"ORT fp32 / int8 @256: each network exported to ONNX (dynamic size) and to static QDQ "
        f"int8 (calibrated on {'the faces' if calibrated_on_faces else 'synthetic faces'}), "
        f"median ms per 1x3x256x256 frame in ONNX Runtime, {threads} intra-op thread(s); MB: the "
        "files' sizes; int8 fps = 1000 / int8 ms."
    )
    return [
        "GFLOPs @256: forward FLOPs of one 1x3x256x256 image, counted with "
        "torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 x MACs).",
        (
            f"CPU latency @256: median of {latency_runs} forward passes after one warm-up, "
            f"torch.set_num_threads({threads}), on {cpu}."
            if latency_runs
            else "CPU latency not measured (latency_runs=0)."
        ),
        *([onnx] if latency == "onnx" else []),
        "teacher PSNR / vs teacher (distillation runs): the teacher's val PSNR on the "
        "same pairs at the student's last validation, and the student's final val PSNR "
        "minus it.",
        "PSNR, SSIM, L1, val loss: each run's best validation values (summary.json); "
        "train px: training resolution.",
        "eval PSNR / SSIM: the run's newest `toonclip eval` on its val split "
        "(eval/val_*/eval.json, means over pairs), else its last validation (summary.json); "
        "identity: the face itself scored as the cartoon on the same pairs; gain: eval minus "
        "identity, what the model adds over doing nothing ('-': not recorded for this run).",
        "train img/s: images per second inside optimiser steps; effective img/s: images trained "
        "/ wall seconds of fit (validation, checkpoints and start-up included). val PSNR swing: "
        "the largest val PSNR change between consecutive validations after the first tenth of "
        "the run (summary.json stability; under 1 dB for a stable recipe).",
        f"Grids: each face is center-cropped, resized to the run's training size, stylised, and "
        f"shown at {tile} px, so runs trained at different sizes line up.",
    ]
