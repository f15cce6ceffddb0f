"""An optional adversarial term: a conditional PatchGAN discriminator and its GAN losses.

The per-pixel loss (L1 + SSIM) averages over plausible cartoons and so draws thin, soft
outlines; a discriminator that judges local patches of (face, cartoon) pairs asks for sharp,
cartoon-like strokes instead (pix2pix, Isola et al. 2017). Off by default: `adversarial.weight`
in the train config; training/adversarial.py runs the two optimisers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from toonclip.errors import ConfigError

GAN_LOSSES = ("lsgan", "hinge")


class PatchDiscriminator(nn.Module):
    """pix2pix's NLayerDiscriminator, conditional: it sees the face and a cartoon side by side.

    forward(face, cartoon): both (N, 3, H, W) float, nominally in [0, 1] (the generator's
    unclamped output is passed as is, so its gradient is not cut at the range ends); mapped to
    [-1, 1] inside. Returns (N, 1, H / (k 2**n_layers) - 2, W / (k 2**n_layers) - 2) raw scores
    (k = `downsample`, 1 by default), one per overlapping patch (70x70 px receptive field for
    n_layers=3, k=1): 6x6 at 64 px, 14x14 at 128 px (`patch_map_size`).

    Layers: `n_layers` strided 4x4 convs (widths ndf, 2ndf, 4ndf, ... up to 8ndf), one stride-1
    4x4 conv, a 4x4 conv to one channel; LeakyReLU 0.2 between. Every conv is spectrally
    normalised instead of pix2pix's BatchNorm: at batch 2-4 BatchNorm's statistics are noise,
    and they differ between the all-real and all-fake halves, which the discriminator can read
    instead of the image; InstanceNorm would normalise the last maps over only 3x3 to 7x7 values at
    32-64 px. Spectral norm has no statistics at all (any batch, any size) and bounds each layer's
    Lipschitz constant, which keeps the discriminator from overpowering a generator that the
    per-pixel loss mostly drives (Miyato et al. 2018).

    `downsample` k > 1 average-pools the pair by k before the first conv, so the discriminator
    judges (H/k, W/k) images and its gradient to the generator is constant over each k x k
    block: it cannot ask for texture finer than k px (a 2 px checker averages to zero), only
    for strokes and shapes, which is what the targets' outlines and eyes are. With k = 2, one
    layer fewer keeps the patch size in face pixels (n_layers=2: 34 px at half size = 68 px).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 32, n_layers: int = 3, downsample: int = 1):
        super().__init__()
        if int(ndf) < 1 or int(n_layers) < 1 or int(downsample) < 1:
            raise ConfigError(
                f"adversarial: ndf={ndf}, n_layers={n_layers}, downsample={downsample}; "
                "use integers >= 1"
            )
        layers: list[nn.Module] = []
        width = in_channels
        for i in range(n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [_conv(width, out, stride), nn.LeakyReLU(0.2, inplace=True)]
            width = out
        layers.append(_conv(width, 1, 1))
        self.net = nn.Sequential(*layers)
        self.n_layers = int(n_layers)
        self.downsample = int(downsample)

    def forward(self, face: torch.Tensor, cartoon: torch.Tensor) -> torch.Tensor:
        pair = torch.cat([face, cartoon], dim=1) * 2 - 1
        if self.downsample > 1:
            pair = F.avg_pool2d(pair, self.downsample)
        return self.net(pair)


def _conv(c_in: int, c_out: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1))


def patch_map_size(size: int, n_layers: int, downsample: int = 1) -> int:
    """Side of the discriminator's score map for a `size` px input (<= 0: too small)."""
    size //= downsample
    for _ in range(n_layers):
        size //= 2
    return size - 2


def generator_loss(fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """The generator's side: a scalar (float32) from the scores of its outputs, any shape.

    lsgan: mean (D(fake) - 1)^2, in [0, inf), 0 when every patch passes as real;
    hinge: -mean D(fake), unbounded (negative once patches pass as real).
    """
    fake = fake.float()
    if kind == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    if kind == "hinge":
        return -fake.mean()
    raise ConfigError(f"adversarial.loss={kind}: use one of {', '.join(GAN_LOSSES)}")


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """The discriminator's side: a scalar (float32) from the scores of real and generated pairs.

    lsgan: 0.5 * (mean (D(real) - 1)^2 + mean D(fake)^2), in [0, inf); 0.25 when it cannot
    tell them apart and outputs 0.5 everywhere (pix2pix halves the sum so that D learns at half
    G's rate); hinge: mean relu(1 - D(real)) + mean relu(1 + D(fake)), in [0, inf), 2 at D = 0.
    """
    real, fake = real.float(), fake.float()
    if kind == "lsgan":
        return 0.5 * (
            F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))
        )
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ConfigError(f"adversarial.loss={kind}: use one of {', '.join(GAN_LOSSES)}")
