"""`toonclip data fetch [dest=DIR] [source=DIR]`: get the public paired data set.

Downloads `train_data/ffhq` and `train_data/comics_heroes` from the public GitHub repository
Norod/U-2-Net-StyleTransfer (Apache-2.0) into `data/comics-heroes/`, then verifies that every file
decodes and that the two folders pair up. Offline, it fails at once with the ways to point at a copy.
`source=DIR` copies from an existing local copy instead (and verifies it the same way).
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.request
from pathlib import Path

from toonclip.cli import parse_options
from toonclip.data.io import load_rgb
from toonclip.data.pairs import find_pairs
from toonclip.errors import ConfigError, DataError
from toonclip.models.weights import can_reach

log = logging.getLogger(__name__)
REPO = "Norod/U-2-Net-StyleTransfer"
BRANCH = "main"
FOLDERS = ("ffhq", "comics_heroes")
DEFAULT_DEST = Path("data/comics-heroes")
TIMEOUT_S = 30


def cli(argv: list[str]) -> int:
    positionals, opts = parse_options(argv, "toonclip data fetch", ("dest", "source"))
    if positionals != ["fetch"]:
        raise ConfigError("usage: toonclip data fetch [dest=DIR] [source=DIR]")
    dest = Path(opts.get("dest", DEFAULT_DEST))
    if "source" in opts:
        copy_local(Path(opts["source"]), dest)
    else:
        download(dest)
    n = verify(dest)
    print(f"{n} verified pairs in {dest}; train with: toonclip train data.root={dest}")
    return 0


def _offline_message(dest: Path) -> str:
    return (
        f"cannot reach github.com to download {REPO}/train_data. Point training at an existing copy "
        "instead: toonclip train data.root=/path/to/comics-heroes (or export TOONCLIP_DATA=/path), "
        f"or copy it here with: toonclip data fetch source=/path/to/comics-heroes dest={dest}"
    )


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "toonclip-data-fetch"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.read()


def download(dest: Path) -> None:
    if not (can_reach("api.github.com") and can_reach("raw.githubusercontent.com")):
        raise DataError(_offline_message(dest))
    for folder in FOLDERS:
        api = f"https://api.github.com/repos/{REPO}/contents/train_data/{folder}?ref={BRANCH}"
        try:
            listing = json.loads(_get(api))
        except OSError as exc:
            raise DataError(f"listing {api} failed ({exc}); {_offline_message(dest)}") from exc
        out = dest / folder
        out.mkdir(parents=True, exist_ok=True)
        files = [e for e in listing if e.get("type") == "file"]
        for i, entry in enumerate(files, 1):
            target = out / entry["name"]
            if target.is_file() and target.stat().st_size == entry.get("size"):
                continue  # already fetched: a re-run resumes
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(_get(entry["download_url"]))
            tmp.replace(target)
            if i % 20 == 0 or i == len(files):
                log.info("%s: %d/%d", folder, i, len(files))


def copy_local(source: Path, dest: Path) -> None:
    find_pairs(source)  # fails with a clear message when source is not a data root
    for folder in FOLDERS:
        shutil.copytree(source / folder, dest / folder, dirs_exist_ok=True)


def verify(root: Path) -> int:
    """Every file of every pair decodes; returns the number of pairs."""
    pairs = find_pairs(root)
    bad = []
    for pair in pairs:
        for path in (pair.face, pair.cartoon):
            try:
                load_rgb(path)
            except DataError:
                bad.append(path.name)
    if bad:
        raise DataError(
            f"{len(bad)} downloaded file(s) do not decode: {', '.join(bad[:5])}; "
            f"delete them and run toonclip data fetch again"
        )
    return len(pairs)
