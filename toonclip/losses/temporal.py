"""Shift consistency: a term that asks the generator to commute with small motions.

On video, a face moves by a few pixels between frames; a generator whose strokes depend on where
the face sits on the pixel grid then redraws them every frame (flicker). The term compares
G(shift(x)) with shift(G(x)) for a random sub-pixel translation per sample, on the interior only
(the border band sees padding, not image). Weight 0 (off) by default: `temporal.weight` in the
train config; measured on and off in the README's distillation section.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def translation_grid(
    n: int, h: int, w: int, max_shift: float, device, dtype=torch.float32
) -> torch.Tensor:
    """A sampling grid (N, H, W, 2) for F.grid_sample that translates each of `n` images by an
    independent uniform (dx, dy) in [-max_shift, max_shift] pixels."""
    shift = (torch.rand(n, 2, device=device, dtype=dtype) * 2 - 1) * max_shift
    theta = torch.zeros(n, 2, 3, device=device, dtype=dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    theta[:, 0, 2] = shift[:, 0] * 2 / w
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    return F.affine_grid(theta, [n, 3, h, w], align_corners=False)


def shift_consistency(
    generator, face: torch.Tensor, pred: torch.Tensor, max_shift: float = 4.0
) -> torch.Tensor:
    """Mean |G(shift(face)) - shift(pred)| over the interior, a scalar.

    face: (N, 3, H, W) float in [0, 1]; pred = generator(face), same shape (with its graph, so
    the term trains both passes). One extra generator forward and backward per step.
    """
    n, _, h, w = face.shape
    grid = translation_grid(n, h, w, max_shift, face.device, torch.float32)
    moved = F.grid_sample(
        face.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    channels_last = face.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = generator(moved.to(face.dtype).contiguous(memory_format=fmt))
    want = F.grid_sample(
        pred.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    m = int(math.ceil(max_shift))
    if m > 0 and 2 * m < min(h, w):
        out, want = out[..., m:-m, m:-m], want[..., m:-m, m:-m]
    return F.l1_loss(out.float(), want)
