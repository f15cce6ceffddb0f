"""What mixed precision does to SSIM, on real pairs: the identity baseline (each face scored as its
own cartoon) in float32, and under bf16 autocast (as `experiment=gpu_256` trains and validates)
through toonclip's loss and validation, and through torchmetrics called bare (what validation did
before it turned autocast off around its metrics).

    python scripts/ssim_precision.py ../shared/data/comics-heroes [size=256] [pairs=16]

Prints the mean SSIM of each path and the cosine between the bf16 and float32 gradients of the
1 - SSIM loss with respect to the prediction. CPU autocast rounds like CUDA autocast (bf16
convolution outputs); it is slow on CPUs without bf16 instructions, so the pair count is small.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from toonclip.data.io import center_square, load_rgb, resize
from toonclip.data.pairs import find_pairs
from toonclip.losses.ssim import _ssim, ssim


def load(paths, size: int) -> torch.Tensor:
    """(N, 3, size, size) float in [0, 1]."""
    images = np.stack([resize(center_square(load_rgb(p)), size) for p in paths])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def gradient(loss_fn, face: torch.Tensor, cartoon: torch.Tensor, autocast: bool):
    """(SSIM, d(1 - SSIM)/d prediction) of the face as the prediction."""
    pred = face.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss_fn(pred, cartoon)
    (grad,) = torch.autograd.grad(1 - value, pred)
    return value.item(), grad


def main(root: str, size: int = 256, pairs: int = 16) -> None:
    chosen = find_pairs(root)[:pairs]
    face = load([p.face for p in chosen], size)
    cartoon = load([p.cartoon for p in chosen], size)

    # The loss's body without the autocast guard that ssim() puts around it.
    def unguarded(p, t):
        return _ssim(p, t, 11, 1.5)

    full, grad32 = gradient(ssim, face, cartoon, autocast=False)
    guarded, grad16 = gradient(ssim, face, cartoon, autocast=True)
    bare, grad_bare = gradient(unguarded, face, cartoon, autocast=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        metric16 = tm_ssim(face, cartoon, data_range=1.0).item()
    metric32 = tm_ssim(face, cartoon, data_range=1.0).item()

    def cosine(a: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(a.flatten(), grad32.flatten(), dim=0).item()

    print(f"{len(chosen)} pairs of {root} at {size} px; identity SSIM (the face as its cartoon):")
    print(f"  float32: torchmetrics {metric32:.4f}, toonclip's loss {full:.4f}")
    print(f"  bf16 autocast: toonclip's loss {guarded:.4f}, without its guard {bare:.4f}, "
          f"torchmetrics called bare {metric16:.4f}")  # fmt: skip
    print(f"cosine of the 1 - SSIM gradient with float32's: toonclip's loss {cosine(grad16):.3f}, "
          f"without its guard {cosine(grad_bare):.3f}")  # fmt: skip


if __name__ == "__main__":
    args = dict(a.split("=", 1) for a in sys.argv[2:])
    main(sys.argv[1], int(args.get("size", 256)), int(args.get("pairs", 16)))
