"""What a run's validations say, read from its metrics.csv: best, final against identity, and how
much val PSNR swung. summary.json records these for finished, failed and interrupted runs alike.
"""

from __future__ import annotations

import csv
from itertools import pairwise
from pathlib import Path


def val_results(metrics_csv: Path) -> dict:
    """summary.json's `best`, `final`, `identity`, `gain` (and `teacher` for a distillation run)
    and `stability` entries; `final` is None when metrics.csv has no validation yet."""
    return {
        "best": best_metrics(metrics_csv),
        **final_and_identity(metrics_csv),
        "stability": stability(metrics_csv),
    }


def _val_rows(metrics_csv: Path) -> list[dict]:
    """metrics.csv rows of validations (those with val/psnr), in order; [] without the file."""
    try:
        with open(metrics_csv, newline="") as f:
            return [row for row in csv.DictReader(f) if row.get("val/psnr")]
    except OSError:
        return []


def best_metrics(metrics_csv: Path, key: str = "val/psnr") -> dict:
    """The validation row of metrics.csv with the highest `key` (val/psnr, val/ssim, val/l1,
    val/loss and the loss parts; not the identity baseline, which has its own entry)."""
    best: dict = {}
    for row in _val_rows(metrics_csv):
        if row.get(key) and (not best or float(row[key]) > best[key]):
            best = {
                k: round(float(v), 4)
                for k, v in row.items()
                if k.startswith("val/")
                and not k.startswith("val/identity_")
                and v not in ("", None)
            }
            best["step"] = int(float(row.get("step") or 0))
    return best


FINAL_KEYS = ("val/psnr", "val/ssim", "val/l1")


def final_and_identity(metrics_csv: Path) -> dict:
    """`final`: PSNR (dB), SSIM and L1 of the last validation; `identity`: the same metrics of
    the face itself as the prediction (the same val split and metric objects); `gain`: final
    minus identity for PSNR and SSIM (positive: training beat copying the face)."""
    rows = _val_rows(metrics_csv)
    if not rows:
        return {"final": None, "identity": None, "gain": None}
    last = rows[-1]

    def pick(prefix: str) -> dict:
        out = {}
        for key in FINAL_KEYS:
            value = last.get(key.replace("val/", prefix))
            out[key] = round(float(value), 4) if value not in ("", None) else None
        return out

    final, identity = pick("val/"), pick("val/identity_")
    final["step"] = int(float(last.get("step") or 0))
    gain = {
        name: round(final[key] - identity[key], 4)
        if final[key] is not None and identity[key] is not None
        else None
        for name, key in (("psnr", "val/psnr"), ("ssim", "val/ssim"))
    }
    out = {"final": final, "identity": identity, "gain": gain}
    if last.get("val/teacher_psnr") not in ("", None):  # a distillation run
        teacher = {k: round(float(last[f"val/teacher_{k}"]), 4) for k in ("psnr", "ssim")}
        teacher["drop_psnr"] = (
            round(teacher["psnr"] - final["val/psnr"], 4) if final["val/psnr"] is not None else None
        )
        out["teacher"] = teacher
    return out


def stability(metrics_csv: Path) -> dict | None:
    """How much val PSNR (dB) moved between consecutive validations once the first tenth of the
    run's steps had passed: `max_change_db` (the largest |change|, >= 0), `after_step` (a tenth
    of the last validation's step), `validations` (how many were compared). A recipe whose
    validations swing by a dB or more at small batch has eval-mode outputs that cannot be
    trusted (docs/recipe.md). None with fewer than two validations after that step."""
    points: dict[int, float] = {}  # by step: a resumed run's repeated validation counts once
    for row in _val_rows(metrics_csv):
        points[int(float(row.get("step") or 0))] = float(row["val/psnr"])
    if not points:
        return None
    after = max(points) // 10
    psnr = [points[step] for step in sorted(points) if step >= after]
    if len(psnr) < 2:
        return None
    change = max(abs(b - a) for a, b in pairwise(psnr))
    return {"max_change_db": round(change, 4), "after_step": after, "validations": len(psnr)}
