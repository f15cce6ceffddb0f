"""Differentiable SSIM, the same definition as the validation metric (torchmetrics' defaults).

The cartoons differ from the faces mostly in local structure (flat skin, dark outlines), which
SSIM measures and L1 barely does: a (1 - SSIM) term is how the recipe moves val SSIM at all
(docs/recipe.md). Zhao et al., "Loss Functions for Image Restoration with Neural Networks"
(IEEE TCI 2017) pair it with L1 the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toonclip.precision import full_precision

K1, K2 = 0.01, 0.03


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size,) normalised 1-D Gaussian."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(
    pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Mean SSIM of (N, C, H, W) images with data range 1 (values nominally in [0, 1]).

    Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, per channel, reflect-padded and averaged over
    every pixel: torchmetrics' `structural_similarity_index_measure(data_range=1.0)`.
    Computed in float32, autocast or not; returns a scalar in [-1, 1] (1: identical).
    """
    # Autocast would run the blur convolutions in bf16/fp16 whatever their inputs' dtype, and
    # variance = E[x^2] - E[x]^2 from 8-bit mantissas is mostly rounding: under bf16-mixed,
    # the identity SSIM of 16 faces and their cartoons read 0.01 instead of 0.53 and the gradient
    # pointed 39 degrees away from the float32 one (scripts/ssim_precision.py).
    with full_precision(pred.device):
        return _ssim(pred, target, window, sigma)


def _ssim(pred: torch.Tensor, target: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    pad = window // 2
    pred = F.pad(pred.float(), (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target.float(), (pad, pad, pad, pad), mode="reflect")
    c = pred.shape[1]
    g = gaussian_window(window, sigma).to(pred.device)

    def blur(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        x = F.conv2d(x, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
        return F.conv2d(x, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)

    # One separable blur over the five moments at once (batch them along the channel axis).
    moments = blur(torch.cat([pred, target, pred * pred, target * target, pred * target], 1))
    mu_p, mu_t, e_pp, e_tt, e_pt = moments.split(c, dim=1)
    var_p, var_t = (e_pp - mu_p**2).clamp(min=0), (e_tt - mu_t**2).clamp(min=0)
    cov = e_pt - mu_p * mu_t
    c1, c2 = K1**2, K2**2
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return (num / den).mean()
