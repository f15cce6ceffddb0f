"""Decode every pair once, at a fixed resolution, before training.

A 1024 px JPEG takes ~10x longer to decode than the whole augmentation pipeline takes on a small
crop, so decoding it every epoch would make the data loader the bottleneck. All pairs are decoded
once (JPEG draft mode decodes directly at 1/2, 1/4 or 1/8 scale), centre-cropped to a square,
resized to `cache_size` and kept as one uint8 array that forked loader workers share copy-on-write.
With `mode="disk"` the arrays are also written under `cache_dir`, keyed by size and the source
files' size and mtime, so later runs and sweep members skip decoding too.

Decoding everything up front is also how bad files are found before training starts.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from toonclip.data.io import DECODE_ERRORS, _to_rgb, center_square, decode_error, resize
from toonclip.data.pairs import Pair
from toonclip.errors import DataError

log = logging.getLogger(__name__)
MODES = ("memory", "disk")


def decode_at(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode `path`: returns the (size, size, 3) uint8 RGB square (centre crop, resize) and the
    original (height, width)."""
    from PIL import ImageOps

    try:
        with Image.open(path) as img:
            original = (
                ImageOps.exif_transpose(img).size[::-1]
                if img.getexif().get(0x0112)
                else img.size[::-1]
            )
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # decode at reduced scale, still >= size
            img.load()
            rgb = _to_rgb(ImageOps.exif_transpose(img))
    except DECODE_ERRORS as exc:
        raise decode_error(path, exc) from exc
    return resize(center_square(rgb), size), tuple(original)


def _key(pairs: list[Pair], size: int) -> str:
    h = hashlib.sha1(str(size).encode())
    for p in pairs:
        for f in (p.face, p.cartoon):
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_cache(
    pairs: list[Pair],
    size: int,
    mode: str = "memory",
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    threads: int = 2,
) -> tuple[np.ndarray, np.ndarray, list[Pair]]:
    """Decode all pairs at `size`.

    Returns faces (N, size, size, 3) uint8, cartoons (same shape), and the pairs kept (all of them
    unless `skip_bad` dropped undecodable ones). Raises DataError listing every bad file otherwise.
    """
    if mode not in MODES:
        raise DataError(f"data.cache={mode}: use one of {', '.join(MODES)}")
    disk_file = None
    if mode == "disk":
        folder = Path(cache_dir or Path.home() / ".cache" / "toonclip").expanduser()
        disk_file = folder / f"pairs_{size}px_{_key(pairs, size)}.npz"
        if disk_file.is_file():
            try:
                with np.load(disk_file) as z:
                    kept = [pairs[i] for i in z["kept"]]
                    faces, cartoons = z["faces"], z["cartoons"]
                log.info("data cache hit: %s (%d pairs)", disk_file, len(kept))
                return faces, cartoons, kept
            except Exception as exc:  # noqa: BLE001 - truncated, damaged or foreign: rebuild
                log.warning(
                    "data cache %s is damaged (%s: %s); rebuilding it from the images",
                    disk_file,
                    type(exc).__name__,
                    (str(exc).splitlines() or [""])[0][:120],
                )

    def work(pair: Pair):
        try:
            face, face_hw = decode_at(pair.face, size)
            cartoon, cartoon_hw = decode_at(pair.cartoon, size)
        except DataError as exc:
            return pair, None, None, str(exc)
        if face_hw != cartoon_hw:
            log.warning(
                "pair %s: face is %dx%d but cartoon is %dx%d; both resized to %d px",
                pair.stem,
                face_hw[1],
                face_hw[0],
                cartoon_hw[1],
                cartoon_hw[0],
                size,
            )
        return pair, face, cartoon, None

    # PIL releases the GIL while decoding, so threads give a real speed-up.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(work, pairs))
    bad = [err for _, _, _, err in results if err]
    if bad and not skip_bad:
        files = "; ".join(b.removeprefix("cannot decode image ") for b in bad[:5])
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DataError(
            f"{len(bad)} image(s) cannot be decoded: {files}{more}. "
            "Fix or remove them, or set data.skip_bad=true to skip those pairs"
        )
    if bad:
        log.warning(
            "skipped %d pair(s) with undecodable images (data.skip_bad=true): %s",
            len(bad),
            "; ".join(b.removeprefix("cannot decode image ") for b in bad),
        )
    good = [(i, r) for i, r in enumerate(results) if r[3] is None]
    if not good:
        raise DataError("no decodable pairs left after data.skip_bad=true skipped the bad files")
    faces = np.stack([r[1] for _, r in good])
    cartoons = np.stack([r[2] for _, r in good])
    kept = [r[0] for _, r in good]
    if disk_file is not None:
        disk_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = disk_file.with_suffix(".tmp.npz")
        np.savez(tmp, faces=faces, cartoons=cartoons, kept=np.array([i for i, _ in good]))
        tmp.replace(disk_file)  # atomic: a parallel sweep member never reads half a file
    return faces, cartoons, kept
