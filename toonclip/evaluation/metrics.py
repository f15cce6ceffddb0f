"""Per-pair PSNR, SSIM and L1 of a model, and of the identity baseline on the same pairs.

The identity baseline scores the face itself as the cartoon. A model is only worth its figures
where it beats doing nothing, so every mean comes with the identity mean and the gain over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from toonclip.errors import DataError

PSNR_CAP_DB = 100.0
METRICS = ("psnr", "ssim", "l1")
FIELDS = ("stem", *METRICS, *(f"identity_{m}" for m in METRICS))

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def _batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(x)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) or (3, H, W) images, got {tuple(x.shape)}")
    return x.float()


def score(pred: torch.Tensor, target: torch.Tensor) -> dict[str, list[float]]:
    """PSNR (dB), SSIM and L1 of each image in `pred` against the same image in `target`.

    pred, target: (N, 3, H, W) or (3, H, W) float RGB in [0, 1]; `pred` is clamped to [0, 1]
    first (networks overshoot a little). Returns {"psnr", "ssim", "l1"}, N floats each:

    - PSNR: 10 log10(1 / MSE) with data range 1, capped at PSNR_CAP_DB (100 dB). Identical images
      have MSE 0 and an infinite PSNR; the cap keeps the mean over pairs finite and comparable.
    - SSIM: torchmetrics `structural_similarity_index_measure` with its defaults (Gaussian window
      11 px, sigma 1.5), data range 1, one value per image, computed in float64.
    - L1: mean absolute difference over pixels and channels.
    """
    pred, target = _batch(pred).clamp(0, 1), _batch(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff = (pred - target).flatten(1)
    mse = diff.double().pow(2).mean(1)
    psnr = (10 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP_DB)  # MSE 0: inf -> the cap
    # float64: in float32 the variance terms lose ~1e-4, so identical images scored 0.99994.
    ssim = structural_similarity_index_measure(
        pred.double(), target.double(), data_range=1.0, reduction="none"
    )
    l1 = diff.abs().mean(1)
    return {"psnr": psnr.tolist(), "ssim": ssim.reshape(-1).tolist(), "l1": l1.tolist()}


def checker_energy(images: torch.Tensor) -> list[float]:
    """Pixel-scale texture of each image: mean |x00 - x01 - x10 + x11| / 4 over 2x2 neighbours.

    images: (N, 3, H, W) or (3, H, W) float RGB in [0, 1], H, W >= 2. Returns N floats in
    [0, 1]: the amplitude of a 2 px checker added to a flat image, 0 for flat images and for
    straight horizontal or vertical edges (the filter cancels them), so it reads the speckle and
    checker noise that generators add, not the outlines a cartoon should have. Scale matters:
    compare images at one size (at 128 px: ~0.005 for the faces, ~0.0025 for U2-Net's clean
    cartoons of them).
    """
    x = _batch(images).clamp(0, 1)
    response = x[..., :-1, :-1] - x[..., :-1, 1:] - x[..., 1:, :-1] + x[..., 1:, 1:]
    return (response.abs() / 4).flatten(1).mean(1).tolist()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


@torch.inference_mode()
def run_pairs(
    model_fn: ModelFn,
    faces: np.ndarray,
    cartoons: np.ndarray,
    stems: Sequence[str] | None = None,
    batch: int = 4,
    keep: int = 0,
) -> tuple[list[dict], dict, torch.Tensor]:
    """`evaluate`, plus the first `keep` predictions ((keep, 3, H, W) float in [0, 1])."""
    if len(faces) != len(cartoons) or not len(faces):
        raise DataError(f"need as many faces as cartoons (got {len(faces)} and {len(cartoons)})")
    stems = list(stems) if stems is not None else [f"{i:04d}" for i in range(len(faces))]
    rows, kept = [], []
    for start in range(0, len(faces), max(1, int(batch))):
        face = to_tensor(faces[start : start + batch])
        target = to_tensor(cartoons[start : start + batch])
        pred = model_fn(face).float().cpu()
        if pred.shape != face.shape:
            raise DataError(
                f"the model returned {tuple(pred.shape)} for a {tuple(face.shape)} input; "
                "a fixed-size model needs size= equal to its input size"
            )
        model, ident = score(pred, target), score(face, target)
        for i in range(face.shape[0]):
            row = {"stem": stems[start + i]}
            row.update({m: model[m][i] for m in METRICS})
            row.update({f"identity_{m}": ident[m][i] for m in METRICS})
            rows.append(row)
        if sum(map(len, kept)) < keep:
            kept.append(pred.clamp(0, 1))
    means = {key: float(np.mean([r[key] for r in rows])) for key in FIELDS[1:]}
    means["gain_psnr"] = means["psnr"] - means["identity_psnr"]
    means["gain_ssim"] = means["ssim"] - means["identity_ssim"]
    means["n_pairs"] = len(rows)
    preds = torch.cat(kept)[:keep] if kept else torch.empty(0, 3, *faces.shape[1:3])
    return rows, means, preds


def evaluate(
    model_fn: ModelFn,
    faces: np.ndarray,
    cartoons: np.ndarray,
    stems: Sequence[str] | None = None,
    batch: int = 4,
) -> tuple[list[dict], dict]:
    """Score `model_fn` and the identity baseline on the same pairs.

    model_fn: (B, 3, H, W) float RGB in [0, 1] -> (B, 3, H, W) float (clamped to [0, 1] here),
    called under torch.inference_mode on `batch` pairs at a time (put the model in eval mode).
    faces, cartoons: (N, H, W, 3) uint8 RGB, pixel-aligned pairs at the evaluation size.
    stems: a name per pair for the rows (default "0000", "0001", ...).

    Returns (rows, means). rows: one dict per pair with FIELDS (stem, psnr, ssim, l1,
    identity_psnr, identity_ssim, identity_l1); means: the mean of every figure over the pairs,
    plus gain_psnr and gain_ssim (model minus identity) and n_pairs. PSNR is capped at 100 dB.
    """
    rows, means, _ = run_pairs(model_fn, faces, cartoons, stems, batch)
    return rows, means
