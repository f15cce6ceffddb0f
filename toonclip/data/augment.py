"""Paired augmentation: the same geometry on face and cartoon, colour changes on the face only.

Geometry runs through albumentations' ReplayCompose on the face; the recorded parameters are then
replayed on the cartoon, so a crop, flip or rotation lands on the same pixels in both images.
Photometric changes (colour jitter, noise) touch only the face: the target cartoon style must not
drift, and noise on the input alone teaches the network that skin texture is not worth drawing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import albumentations as A
import cv2
import numpy as np

from toonclip.errors import ConfigError

# Used for any key the config leaves out (the config file holds the real defaults).
DEFAULTS = {
    "crop_scale": (0.7, 1.0), "crop_ratio": (0.9, 1.1), "hflip_p": 0.5, "affine_p": 0.5,
    "rotate": 10.0, "scale": (0.95, 1.05), "translate": 0.03, "color_jitter": None,
    "face_noise": {"std": (0.02, 0.06), "p": 0.0},
}  # fmt: skip

# Options read as [low, high] and as probabilities, by their dotted names under data.augment;
# an error's example range is the one in DEFAULTS.
RANGES = ("crop_scale", "crop_ratio", "scale", "face_noise.std")
PROBABILITIES = ("hflip_p", "affine_p", "color_jitter.p", "face_noise.p")


def _lookup(cfg: Mapping, dotted: str):
    for part in dotted.split("."):
        if not isinstance(cfg, Mapping) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def _is_range(value) -> bool:
    # Sequence covers list, tuple and OmegaConf's ListConfig; a string is one too, but not a range.
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and value[0] <= value[1]
    )


def resolve(cfg: Mapping | None) -> dict:
    """`cfg` over DEFAULTS, checked: a malformed range or probability raises a one-line ConfigError.

    Catching it here, before any worker starts, turns `face_noise.std=0.05` into a message that
    names the option and the fix instead of a TypeError deep inside albumentations.
    """
    cfg = {**DEFAULTS, **dict(cfg or {})}
    for key in RANGES:
        value = _lookup(cfg, key)
        if value is None or _is_range(value):
            continue
        example = ",".join(str(v) for v in _lookup(DEFAULTS, key))
        raise ConfigError(
            f"data.augment.{key}={value}: use a [low, high] range with low <= high, "
            f"e.g. data.augment.{key}=[{example}]"
        )
    for key in PROBABILITIES:
        value = _lookup(cfg, key)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise ConfigError(f"data.augment.{key}={value}: use a probability in [0, 1]")
    return cfg


def build_geometric(size: int, cfg: Mapping, train: bool) -> A.ReplayCompose:
    """Geometric transforms to `size` x `size`. Validation only resizes (deterministic)."""
    if not train:
        return A.ReplayCompose([A.Resize(size, size, interpolation=cv2.INTER_AREA)])
    return A.ReplayCompose(
        [
            A.RandomResizedCrop(
                size=(size, size),
                scale=tuple(cfg["crop_scale"]),
                ratio=tuple(cfg["crop_ratio"]),
                interpolation=cv2.INTER_AREA,
            ),
            A.HorizontalFlip(p=cfg["hflip_p"]),
            A.Affine(
                rotate=(-cfg["rotate"], cfg["rotate"]),
                scale=tuple(cfg["scale"]),
                translate_percent=(-cfg["translate"], cfg["translate"]),
                border_mode=cv2.BORDER_REFLECT_101,
                p=cfg["affine_p"],
            ),
        ]
    )


def build_photometric(cfg: Mapping, train: bool) -> A.Compose | None:
    """Colour jitter and Gaussian noise for the face, or None when both are off (validation, p 0).

    `face_noise.std` is a [low, high] range of the noise's standard deviation as a fraction of
    full scale (0.05 = 12.75 grey levels), drawn per image; independent per channel.
    """
    if not train:
        return None
    steps = []
    jitter = cfg.get("color_jitter") or {}
    if jitter and jitter.get("p", 0) > 0:
        steps.append(
            A.ColorJitter(
                brightness=jitter["brightness"],
                contrast=jitter["contrast"],
                saturation=jitter["saturation"],
                hue=jitter["hue"],
                p=jitter["p"],
            )
        )
    noise = cfg.get("face_noise") or {}
    if noise and noise.get("p", 0) > 0:
        steps.append(
            A.GaussNoise(
                std_range=tuple(noise["std"]),
                mean_range=(0.0, 0.0),
                per_channel=True,
                p=noise["p"],
            )  # fmt: skip
        )
    return A.Compose(steps) if steps else None


class PairAugment:
    """Callable (face, cartoon) -> (face, cartoon); HWC uint8 RGB in, (size, size, 3) uint8 out."""

    def __init__(self, size: int, cfg: Mapping, train: bool):
        cfg = resolve(cfg)
        self.geometric = build_geometric(size, cfg, train)
        self.photometric = build_photometric(cfg, train)

    def __call__(self, face: np.ndarray, cartoon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.geometric(image=face)
        cartoon = A.ReplayCompose.replay(out["replay"], image=cartoon)["image"]
        face = out["image"]
        if self.photometric is not None:
            face = self.photometric(image=face)["image"]
        return face, cartoon
