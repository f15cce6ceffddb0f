"""Reading any common image file as 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toonclip.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# What a file that cannot be decoded raises. A DecompressionBombError (more pixels than
# Image.MAX_IMAGE_PIXELS * 2: a small file that would take gigabytes to decode) is one of them.
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def decode_error(path: Path, exc: Exception) -> DataError:
    """The one-line DataError for a file that `exc` says cannot be decoded."""
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(
            f"cannot decode image {path}: it has more pixels than Pillow's safety limit "
            f"({Image.MAX_IMAGE_PIXELS * 2:,}); shrink it first, or remove it"
        )
    return DataError(f"cannot decode image {path}: {type(exc).__name__}: {exc}")


def is_image_file(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into (H, W, 3) uint8 RGB.

    Handles EXIF orientation, grayscale, palette, alpha (composited on white) and 16-bit or float
    images (rescaled to 8 bit). Raises DataError naming the file when it cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except DECODE_ERRORS as exc:
        raise decode_error(path, exc) from exc


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def center_square(image: np.ndarray) -> np.ndarray:
    """Crop the central square of an HWC image (no-op when already square)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HWC uint8 image to size x size; area filter when shrinking, bicubic when growing."""
    import cv2

    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)
