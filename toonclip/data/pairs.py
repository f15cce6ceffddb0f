"""Finding face/cartoon pairs (same file stem in two folders) and the seeded train/val split."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from toonclip.data.io import is_image_file
from toonclip.errors import DataError

log = logging.getLogger(__name__)

FETCH_HINT = (
    "run `toonclip data fetch`, or point data.root (or the TOONCLIP_DATA environment variable) "
    "at a folder holding ffhq/ and comics_heroes/, e.g. data.root=../shared/data/comics-heroes"
)


@dataclass(frozen=True)
class Pair:
    stem: str
    face: Path
    cartoon: Path


_WARNED: set[tuple] = set()


def _by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() and not path.exists():
            log.warning("%s is a broken symbolic link (ignored); fix or remove it", path)
            continue
        if is_image_file(path):
            if path.stem in found:
                log.warning(
                    "%s: two files named %s.*; using %s", folder, path.stem, found[path.stem].name
                )
                continue
            found[path.stem] = path
    return found


def find_pairs(
    root: str | Path, faces_dir: str = "ffhq", cartoons_dir: str = "comics_heroes"
) -> list[Pair]:
    """Pairs under `root` matched by file stem, sorted by stem. Warns about unmatched files."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} does not exist; {FETCH_HINT}")
    faces, cartoons = root / faces_dir, root / cartoons_dir
    for folder, option in ((faces, "data.faces_dir"), (cartoons, "data.cartoons_dir")):
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder (set {option} or data.root); {FETCH_HINT}")
    face_files, cartoon_files = _by_stem(faces), _by_stem(cartoons)
    common = sorted(face_files.keys() & cartoon_files.keys())
    unmatched = sorted(face_files.keys() ^ cartoon_files.keys())
    # find_pairs runs twice per train (the early check, then the data module): say it once.
    key = (str(faces), str(cartoons), tuple(unmatched))
    if unmatched and key not in _WARNED:
        _WARNED.add(key)
        shown = ", ".join(unmatched[:10]) + (
            f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        )
        log.warning(
            "%d image(s) without a partner in %s / %s (ignored): %s",
            len(unmatched),
            faces,
            cartoons,
            shown,
        )
    if not common:
        raise DataError(
            f"no pairs: no file stem appears in both {faces} and {cartoons}; "
            "a pair is the same file name (any image extension) in both folders"
        )
    return [Pair(s, face_files[s], cartoon_files[s]) for s in common]


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Seeded split; at least one val pair and one train pair whenever there are two or more pairs."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"data.val_fraction={val_fraction}: must be in [0, 1)")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = round(len(pairs) * val_fraction)
    if len(pairs) >= 2:
        n_val = min(max(n_val, 1), len(pairs) - 1)
    else:
        log.warning("only one pair: it is used for both training and validation")
        return list(pairs), list(pairs)
    val_idx = sorted(order[:n_val])
    train_idx = sorted(order[n_val:])
    return [pairs[i] for i in train_idx], [pairs[i] for i in val_idx]
