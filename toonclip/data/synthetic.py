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


def moving_face_clip(n_frames: int = 60, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """A synthetic face moving over a textured background: `n_frames` (size, size, 3) uint8 RGB.

    The face (`synthetic_face` inside a soft elliptical cut-out) drifts on a smooth path (up to
    6 % of the frame, about 1 % a frame) and tilts by up to 6 degrees, while the background pans
    on a path of its own (up to 10 %). So the clip has global motion, a moving object, and pixels
    that appear or are covered (at the frame edge and around the head): what the temporal metrics
    must handle. The face and texture are drawn once from `seed`; there is no per-frame noise,
    so any change between frames is motion.
    """
    import cv2

    rng = np.random.default_rng(seed)
    face = synthetic_face(rng, size).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    # Soft edge (a few pixels) so the head's outline moves with sub-pixel precision.
    radius = np.sqrt(((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.32) ** 2)
    alpha = np.clip((1 - radius) * size / 4, 0, 1).astype(np.float32)
    # The background is larger than the frame so that panning never runs off its edge; blurred
    # noise at two scales gives the optical flow texture to lock on to.
    pad = size // 4
    noise = rng.uniform(0, 1, (size + 2 * pad,) * 2 + (3,)).astype(np.float32)
    texture = 110.0
    for sigma, contrast in ((size / 96, 15), (size / 20, 35)):
        layer = cv2.GaussianBlur(noise, (0, 0), max(1.0, sigma))
        texture = texture + (layer - layer.mean((0, 1))) / layer.std((0, 1)) * contrast
    centre = (size / 2, size / 2)
    frames = []
    for t in range(n_frames):
        pan = 0.4 * pad * np.sin(2 * np.pi * t / 90 + np.array([0.0, 1.0]))
        m_bg = np.float32([[1, 0, -pad - pan[0]], [0, 1, -pad - pan[1]]])
        bg = cv2.warpAffine(texture, m_bg, (size, size), flags=cv2.INTER_LINEAR)
        m_face = cv2.getRotationMatrix2D(centre, 6 * np.sin(2 * np.pi * t / 50), 1.0)
        m_face[:, 2] += size * np.array([0.06 * np.sin(2 * np.pi * t / 40), 0.03 * np.sin(t / 5)])
        fg = cv2.warpAffine(face, m_face, (size, size), flags=cv2.INTER_LINEAR)
        a = cv2.warpAffine(alpha, m_face, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        frames.append(np.clip(bg * (1 - a) + fg * a + 0.5, 0, 255).astype(np.uint8))
    return frames
