"""Synthetic head-and-shoulders photos with a known person mask, for `region=` tests and figures.

`draw_person` gives a face OpenCV's Haar cascade finds (brows, eyes, nose, mouth), hair, a neck
and rounded shoulders running off the bottom edge, on a textured background (waves, blocks,
noise), and the drawn truth. Images (H, W, 3) uint8 RGB; masks (H, W) bool.
"""

from __future__ import annotations

import numpy as np

SKIN = ((225, 180, 150), (200, 150, 120), (160, 110, 80), (110, 75, 55), (240, 200, 175))
HAIR = ((60, 40, 30), (30, 25, 25), (150, 110, 60), (200, 190, 170), (110, 50, 30))


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) uint8: a random background (waves, blocks and noise, like a room or a street)."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(40, 200, 3)
    f = rng.uniform(2, 9, 2)
    img = np.stack(
        [base[c] + 45 * np.sin(f[0] * xx + 2 * c) * np.cos(f[1] * yy + c) for c in range(3)], -1
    )
    for _ in range(int(rng.integers(3, 9))):  # furniture, windows, posters
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        cv2.rectangle(img, (x0, y0), (x1, y1), rng.uniform(20, 235, 3).tolist(), -1)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def person_shape(h: int, w: int, cx: float, cy: float, s: float) -> np.ndarray:
    """(h, w) uint8 labels: 0 background, 1 hair, 2 face, 3 neck, 4 shoulders and torso.

    (cx, cy): the face centre in px; s: the face's half-width is 0.85 s, its half-height 1.1 s.
    """
    import cv2

    lab = np.zeros((h, w), np.uint8)

    def pt(dx, dy):
        return int(round(cx + dx * s)), int(round(cy + dy * s))

    def ax(a, b):
        return max(1, int(round(a * s))), max(1, int(round(b * s)))

    # shoulders: a wide ellipse whose top is the shoulder line, running off the bottom edge
    cv2.ellipse(lab, pt(0, 3.4), ax(2.6, 1.9), 0, 0, 360, 4, -1)
    cv2.rectangle(lab, pt(-2.6, 3.4), (pt(2.6, 0)[0], h), 4, -1)
    cv2.rectangle(lab, pt(-0.4, 0.6), pt(0.4, 2.0), 3, -1)
    cv2.ellipse(lab, pt(0, -0.35), ax(1.05, 1.2), 0, 180, 360, 1, -1)
    cv2.ellipse(lab, (int(round(cx)), int(round(cy))), ax(0.85, 1.1), 0, 0, 360, 2, -1)
    return lab


def draw_person(h: int = 256, w: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic head-and-shoulders photo and its truth.

    Returns ((h, w, 3) uint8 RGB, (h, w) bool person mask). The face has brows, eyes, nose and
    mouth so that OpenCV's Haar cascade finds it; skin, hair, clothes, background, position and
    scale vary with `seed`.
    """
    import cv2

    rng = np.random.default_rng(seed)
    s = min(h, w) * rng.uniform(0.1, 0.14)
    cx, cy = w / 2 + rng.uniform(-0.12, 0.12) * w, h * rng.uniform(0.32, 0.42)
    lab = person_shape(h, w, cx, cy, s)
    img = texture(h, w, rng)
    skin, hair = SKIN[seed % len(SKIN)], HAIR[(seed // 2) % len(HAIR)]
    shirt = rng.uniform(0, 255, 3)
    img[lab == 1], img[lab == 2], img[lab == 3] = hair, skin, np.array(skin) * 0.9
    cloth = np.clip(shirt + rng.normal(0, 10, (int((lab == 4).sum()), 3)), 0, 255)
    img[lab == 4] = cloth.astype(np.uint8)

    def pt(dx, dy):
        return int(round(cx + dx * s)), int(round(cy + dy * s))

    def ax(a, b):
        return max(1, int(round(a * s))), max(1, int(round(b * s)))

    dark = tuple(int(v * 0.6) for v in skin)
    for side in (-1, 1):
        cv2.ellipse(img, pt(0.35 * side, -0.45), ax(0.22, 0.06), 0, 0, 360, (80, 55, 40), -1)
        cv2.ellipse(img, pt(0.35 * side, -0.22), ax(0.17, 0.09), 0, 0, 360, (250, 250, 250), -1)
        cv2.circle(img, pt(0.35 * side, -0.22), max(1, int(0.08 * s)), (40, 30, 30), -1)
    cv2.ellipse(img, pt(0, 0.15), ax(0.1, 0.2), 0, 0, 360, dark, -1)
    cv2.ellipse(img, pt(0, 0.55), ax(0.3, 0.08), 0, 0, 360, (150, 60, 60), -1)
    img = cv2.GaussianBlur(img, (0, 0), max(h, w) / 320)
    return img, lab > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) masks (bool, or float thresholded at 0.5)."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
