"""`toonclip predict ckpt=FILE|RUN_DIR input=FILE|DIR output=DIR [mode=resize|native] [device=cpu]`.

Writes one PNG cartoon per input image, same file stem, same size as the input (see
toonclip.inference for how sizes other than the training size are handled).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from toonclip.cli import parse_options
from toonclip.data.io import is_image_file, load_rgb
from toonclip.errors import ConfigError, DataError
from toonclip.inference import Stylizer, torch_device
from toonclip.visual import save_png

log = logging.getLogger(__name__)
OPTIONS = ("ckpt", "input", "output", "mode", "device", "size")


def collect_inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_image_file(p))
        if not files:
            raise DataError(f"input={path} holds no image files")
        return files
    raise DataError(f"input={path} does not exist; give an image file or a folder of images")


def cli(argv: list[str]) -> int:
    _, opts = parse_options(argv, "toonclip predict", OPTIONS, paths=False)
    for key in ("ckpt", "input", "output"):
        if key not in opts:
            raise ConfigError(
                f"predict needs {key}=...: toonclip predict ckpt=RUN_DIR/checkpoints/best.ckpt "
                "input=FILE|DIR output=DIR"
            )
    size = opts.get("size")
    if size is not None and (not str(size).isdigit() or int(size) < 32 or int(size) % 32):
        raise ConfigError(f"size={size}: use a multiple of 32 (e.g. size=256), or leave it out")
    out_dir = Path(opts["output"])
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output={out_dir} is a file; predict writes into a folder")
    device = str(torch_device(opts.get("device", "cpu")))
    inputs = collect_inputs(Path(opts["input"]))
    stylize = Stylizer.from_checkpoint(
        opts["ckpt"],
        mode=opts.get("mode", "resize"),
        device=device,
        size=int(size) if size is not None else None,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in inputs:
        try:
            save_png(stylize(load_rgb(path)), out_dir / f"{path.stem}.png")
        except DataError as exc:  # one bad file in a folder must not lose the others
            if len(inputs) == 1:
                raise
            failed.append(path.name)
            log.warning("%s", exc)
    print(f"wrote {len(inputs) - len(failed)} cartoon(s) to {out_dir}")
    if failed:  # the good files are written; exit 1 on a partial failure, as stylize does
        print(
            f"error: {len(failed)} input(s) could not be decoded: {', '.join(failed[:5])}",
            file=sys.stderr,
        )
        return 1
    return 0
