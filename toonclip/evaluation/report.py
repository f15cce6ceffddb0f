"""What `toonclip eval` writes: eval.csv, eval.md, eval.json and grid.png."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from toonclip.evaluation.metrics import FIELDS, PSNR_CAP_DB
from toonclip.visual import make_grid, save_png, to_uint8

_DIGITS = {"psnr": 3, "ssim": 4, "l1": 5}


def headline(means: dict) -> str:
    """'model X dB / Y SSIM vs identity A dB / B SSIM: gain +G dB, +H SSIM (N pairs)'."""
    m = means
    return (
        f"model {m['psnr']:.2f} dB / {m['ssim']:.3f} SSIM vs identity "
        f"{m['identity_psnr']:.2f} dB / {m['identity_ssim']:.3f} SSIM: "
        f"gain {m['gain_psnr']:+.2f} dB, {m['gain_ssim']:+.3f} SSIM ({m['n_pairs']} pairs)"
    )


def _text(key: str, value) -> str:
    if isinstance(value, float):
        return f"{value:.{_DIGITS[key.removeprefix('identity_')]}f}"
    return str(value)


def write_csv(rows: list[dict], means: dict, path: Path) -> None:
    """One row per pair (FIELDS, full precision), then a row with stem "mean"."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"stem": "mean", **means})


def write_markdown(rows: list[dict], means: dict, info: dict, path: Path) -> None:
    heads = ["pair", "PSNR (dB)", "SSIM", "L1", "identity PSNR", "identity SSIM", "identity L1"]
    lines = [
        f"# Evaluation of `{info['model']}`",
        "",
        f"**{headline(means)}**",
        "",
        f"Split `{info['split']}` of `{info['data_root']}` at {info['size']} px. Per-pair figures "
        f"and their means; identity = the face itself scored as the cartoon, so the gain is what "
        f"the model adds over doing nothing. PSNR is capped at {PSNR_CAP_DB:.0f} dB.",
        "",
        "| " + " | ".join(heads) + " |",
        "|---|" + "---:|" * (len(heads) - 1),
    ]
    for row in [*rows, {"stem": "**mean**", **means}]:
        lines.append("| " + " | ".join(_text(k, row[k]) for k in FIELDS) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_json(means: dict, info: dict, path: Path) -> None:
    """Means (see metrics.evaluate) plus split, size, model and data_root."""
    data = {**means, **info}
    data = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_grid(
    faces: np.ndarray, preds: torch.Tensor, cartoons: np.ndarray, means: dict, path: Path
) -> None:
    """Rows: face | prediction | target. faces, cartoons: (N, S, S, 3) uint8; preds: the first
    K <= N predictions, (K, 3, S, S) float in [0, 1]. Headers carry the mean figures."""
    n = len(preds)
    rows = [[f, p, c] for f, p, c in zip(faces[:n], to_uint8(preds), cartoons[:n], strict=True)]
    headers = [
        f"face (identity)\n{means['identity_psnr']:.2f} dB\nSSIM {means['identity_ssim']:.3f}",
        f"prediction\n{means['psnr']:.2f} dB ({means['gain_psnr']:+.2f})\n"
        f"SSIM {means['ssim']:.3f} ({means['gain_ssim']:+.3f})",
        f"target\n{n} of {means['n_pairs']} pairs",
    ]
    # Small eval sizes get a larger display tile so the header text fits its column.
    save_png(make_grid(rows, headers=headers, tile=max(faces.shape[1], 144)), path)
