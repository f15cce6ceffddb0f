"""Synthetic face/cartoon pairs: for tests, and for benchmarks run where no data set exists.

Faces are smooth colour fields with a skin-toned ellipse and two dark 'eyes'; the 'cartoon' is
the same image posterised, so a pair is pixel-aligned like the real data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a smooth background with a skin-toned ellipse 'face' and 'eyes'."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = rng.uniform(40, 200, 3)
    img = bg + 40 * np.stack([np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)], -1)
    cy, cx = rng.uniform(0.45, 0.55, 2)
    ry, rx = rng.uniform(0.28, 0.36), rng.uniform(0.2, 0.26)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    img[inside] = rng.uniform([170, 120, 90], [240, 180, 150])
    for ex in (cx - rx / 2.5, cx + rx / 2.5):
        img[((yy - cy + ry / 4) ** 2 + (xx - ex) ** 2) < (0.03**2)] = (30, 30, 30)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def cartoonize(face: np.ndarray) -> np.ndarray:
    """A deterministic 'cartoon' of a synthetic face: posterised colours."""
    return ((face // 64) * 64 + 32).astype(np.uint8)


def make_pairs(root: Path, n: int = 12, size: int = 64, seed: int = 0) -> Path:
    """Write n pairs as root/ffhq/*.jpg and root/comics_heroes/*.png (same stems)."""
    rng = np.random.default_rng(seed)
    (root / "ffhq").mkdir(parents=True, exist_ok=True)
    (root / "comics_heroes").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        face = synthetic_face(rng, size)
        Image.fromarray(face).save(root / "ffhq" / f"face_{i:03d}.jpg", quality=95)
        Image.fromarray(cartoonize(face)).save(root / "comics_heroes" / f"face_{i:03d}.png")
    return root
