"""The generator: ImageNet normalisation, an smp network, and the residual output around it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from toonclip.models import weights as W
from toonclip.precision import full_precision


class Generator(nn.Module):
    """Face -> cartoon network: ImageNet normalisation, then the smp network.

    forward(x): x is (N, 3, H, W) float RGB in [0, 1], H and W multiples of 32.
    Returns (N, 3, H, W) float RGB, nominally in [0, 1] but not clamped (the loss sees the raw
    values so that out-of-range pixels still get gradients; callers clamp for display).

    residual=True returns x + net(x) with the head's last convolution zero-initialised, so an
    untrained network is the identity (the face itself) and training learns the change from face
    to cartoon. It adds no parameters: the smp network is unchanged. Measured in docs/recipe.md.

    residual_blur=sigma > 0 adds back a Gaussian-blurred face (sigma in pixels of the input,
    reflect-padded) instead of the face itself: the pixel texture the skip path would copy
    straight through (skin pores, JPEG blocks, stubble) is not there for free, so the network has
    to draw the detail it keeps. An untrained network then returns the blurred face. Ignored when
    residual=False.
    """

    def __init__(
        self,
        net: nn.Module,
        arch: str,
        encoder: str,
        weights: W.WeightsRecord,
        residual: bool = False,
        residual_blur: float = 0.0,
    ):
        super().__init__()
        self.net = net
        self.arch, self.encoder = arch, encoder
        self.weights_record = weights
        self.residual = bool(residual)
        if not float(residual_blur) >= 0:
            # The config path reports this earlier, as an option (training/validate.py).
            raise ValueError(f"residual_blur={residual_blur}: use a Gaussian sigma >= 0 in pixels")
        # It blurs what the residual output adds back: without one there is nothing to blur.
        self.residual_blur = float(residual_blur) if self.residual else 0.0
        # Depthwise (one kernel per channel) row and column passes of the separable Gaussian. Not
        # persistent: they follow from the config, so checkpoints stay as they were.
        k = _gaussian_1d(self.residual_blur)
        self.register_buffer("blur_rows", k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), persistent=False)
        self.register_buffer("blur_cols", k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), persistent=False)
        W.register_imagenet_stats(self)
        if self.residual:
            # smp networks end in `segmentation_head`; its last convolution makes the output.
            head_module = getattr(net, "segmentation_head", net)
            head = [m for m in head_module.modules() if isinstance(m, nn.Conv2d)][-1]
            nn.init.zeros_(head.weight)
            if head.bias is not None:
                nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net((x - self.mean) / self.std)
        if not self.residual:
            return y
        return (self._blur(x) if self.residual_blur > 0 else x) + y

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        # In the input's precision under autocast too: the blurred face is most of the output,
        # and a bf16 blur rounds it by up to 0.005 (more than one 8-bit level).
        r = self.blur_rows.shape[-1] // 2
        with full_precision(x.device):
            x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), self.blur_rows, groups=3)
            return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), self.blur_cols, groups=3)


def _gaussian_1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma) (float32, sums to 1); [1.] for sigma 0."""
    if sigma <= 0:
        return torch.ones(1)
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()
