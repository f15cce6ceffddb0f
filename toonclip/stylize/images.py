"""Stylising image files and folders with any (H, W, 3) uint8 -> (H, W, 3) uint8 callable."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from toonclip.data.io import IMAGE_EXTENSIONS, is_image_file, load_rgb
from toonclip.errors import DataError, ToonclipError

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


def save_rgb(image: np.ndarray, path: str | Path) -> Path:
    """Write (H, W, 3) uint8 RGB; the format follows the suffix (JPEG at quality 95)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"output {path}: use an image suffix ({', '.join(IMAGE_EXTENSIONS)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    Image.fromarray(image).save(path, **kwargs)
    return path


def stylize_image(fn: Transform, src: str | Path, dst: str | Path) -> Path:
    """Read `src`, stylise it (same size out), write `dst`."""
    return save_rgb(fn(load_rgb(src)), dst)


def stylize_folder(fn: Transform, src: str | Path, dst: str | Path, progress: bool = True) -> dict:
    """Stylise every image under `src` (recursively) into `dst`, keeping relative paths.

    Files that fail to decode are skipped with a warning and listed under "failed"; non-image
    files are ignored. Returns {"written": n, "failed": [paths]}.
    """
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    files = sorted(p for p in src.rglob("*") if is_image_file(p) and dst not in p.parents)
    if not files:
        raise DataError(f"input folder {src} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    written, failed = 0, []
    for path in tqdm(files, desc="stylize", unit="img", disable=not progress):
        try:
            stylize_image(fn, path, dst / path.relative_to(src))
            written += 1
        except ToonclipError as exc:
            log.warning("skipped %s", exc)
            failed.append(str(path))
    return {"written": written, "failed": failed}
