"""Image grids with optional column headers: validation grids and cross-run comparison grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] (clamped here) -> (N, H, W, 3) uint8."""
    arr = images.detach().float().clamp(0, 1).mul(255).round().byte()
    return arr.permute(0, 2, 3, 1).cpu().numpy()


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HWC uint8 image to size x size (display only: keeps grids aligned across runs)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def placeholder(size: int, text: str) -> np.ndarray:
    """A grey tile with a short text, for a run that failed or has no prediction."""
    tile = Image.new("RGB", (size, size), (90, 90, 90))
    draw = ImageDraw.Draw(tile)
    draw.multiline_text((6, size // 2 - 10), text, fill=(255, 220, 220), font=_font(12))
    return np.asarray(tile)


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    headers: Sequence[str] | None = None,
    tile: int | None = None,
    pad: int = 2,
) -> np.ndarray:
    """Lay out rows of HWC uint8 images as one HWC uint8 image.

    Every tile is resized to `tile` px square (default: the first image's height) so rows and
    columns line up whatever size each run used. `headers` label the columns.
    """
    if not rows or not rows[0]:
        raise ValueError("make_grid needs at least one row with one image")
    tile = tile or rows[0][0].shape[0]
    n_cols = max(len(r) for r in rows)
    head_h = 0
    if headers:
        head_h = 16 * max(len(h.split("\n")) for h in headers) + 6
    width = n_cols * tile + (n_cols + 1) * pad
    height = head_h + len(rows) * tile + (len(rows) + 1) * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    if headers:
        draw = ImageDraw.Draw(canvas)
        for c, text in enumerate(headers):
            draw.multiline_text(
                (pad + c * (tile + pad) + 2, 3), text, fill=(0, 0, 0), font=_font(13)
            )
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            x = pad + c * (tile + pad)
            y = head_h + pad + r * (tile + pad)
            canvas.paste(Image.fromarray(fit(img, tile)), (x, y))
    return np.asarray(canvas)


def save_png(image: np.ndarray, path) -> None:
    Image.fromarray(image).save(path)
