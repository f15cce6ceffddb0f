"""Per-option smp arguments of the generator: decoder width, decoder norm, encoder drop path.

Each turns one `model.*` value into the keyword arguments smp's class (or timm, through smp) takes,
or a one-line ConfigError naming the option and what to use instead.
"""

from __future__ import annotations

import inspect

from toonclip.errors import ConfigError
from toonclip.models.names import ARCHITECTURES, unknown

# smp's default decoder widths; model.decoder_width scales them (smaller students, issue 11).
DECODER_WIDTHS: dict[str, dict[str, int | tuple[int, ...]]] = {
    "unetplusplus": {"decoder_channels": (256, 128, 64, 32, 16)},
    "unet": {"decoder_channels": (256, 128, 64, 32, 16)},
    "manet": {"decoder_channels": (256, 128, 64, 32, 16)},
    "fpn": {"decoder_pyramid_channels": 256, "decoder_segmentation_channels": 128},
    "pan": {"decoder_channels": 32},
    "deeplabv3": {"decoder_channels": 256},
    "deeplabv3plus": {"decoder_channels": 256},
    "upernet": {"decoder_channels": 256},
}

# model.decoder_norm -> smp's decoder_use_norm. smp 0.6 also offers "layernorm", but it builds
# nn.LayerNorm(channels) and applies it to (N, C, H, W) tensors: that normalises over the image's
# width, and fails unless the width equals the channel count (checked in tests/test_models.py).
DECODER_NORMS: dict[str, str | dict] = {
    "batchnorm": "batchnorm",
    "instancenorm": {"type": "instancenorm", "affine": True},
    "none": "identity",
}
# The archs whose smp class takes decoder_use_norm (read from smp, so a new release that adds it
# to another class needs no edit here).
DECODER_NORM_ARCHS = [
    a for a, cls in ARCHITECTURES.items() if "decoder_use_norm" in inspect.signature(cls).parameters
]


def decoder_kwargs(arch: str, width: float) -> dict:
    """smp decoder arguments for a width multiplier: every decoder channel count times `width`,
    rounded, at least 4 (and a multiple of 4 where the default is one: grouped kernels like them).
    """
    width = float(width)
    if width == 1.0:
        return {}
    if not 0.0 < width <= 4.0:
        raise ConfigError(f"model.decoder_width={width:g}: use a multiplier in (0, 4], e.g. 0.25")
    if arch not in DECODER_WIDTHS:
        valid = ", ".join(DECODER_WIDTHS)
        raise ConfigError(
            f"model.decoder_width={width:g}: model.arch={arch} has no decoder width to scale "
            f"(its decoder follows the encoder's channels); use model.decoder_width=1 or one of {valid}"
        )

    def scale(c: int) -> int:
        return max(4, int(round(c * width / 4)) * 4)

    return {
        key: tuple(scale(c) for c in value) if isinstance(value, tuple) else scale(value)
        for key, value in DECODER_WIDTHS[arch].items()
    }


def decoder_norm_kwargs(arch: str, norm: str) -> dict:
    """smp's decoder_use_norm for model.decoder_norm; {} for smp's default (batchnorm)."""
    if norm == "layernorm":
        raise ConfigError(
            "model.decoder_norm=layernorm: smp's layernorm normalises over the image's width, not "
            f"its channels; use one of {', '.join(DECODER_NORMS)}"
        )
    if norm not in DECODER_NORMS:
        raise ConfigError(unknown("model.decoder_norm", norm, list(DECODER_NORMS)))
    if norm == "batchnorm":
        return {}
    if arch not in DECODER_NORM_ARCHS:
        raise ConfigError(
            f"model.decoder_norm={norm}: model.arch={arch} has no decoder norm option in smp; use "
            f"model.decoder_norm=batchnorm, or a model.arch that has one: {', '.join(DECODER_NORM_ARCHS)}"
        )
    return {"decoder_use_norm": DECODER_NORMS[norm]}


def drop_path_kwargs(smp_encoder: str, rate: float) -> dict:
    """timm's `drop_path_rate` for model.drop_path; {} at 0 (smp's encoders have no such option)."""
    rate = float(rate)
    if rate == 0.0:
        return {}
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"model.drop_path={rate:g}: use a rate in [0, 1), e.g. 0.1")
    if not smp_encoder.startswith("tu-"):
        raise ConfigError(
            f"model.drop_path={rate:g}: model.encoder={smp_encoder} is one of smp's own encoders, "
            "which have no stochastic depth; use model.drop_path=0 or a timm encoder (tu-<name>)"
        )
    return {"drop_path_rate": rate}
