"""`toonclip stylize MODEL input=IMAGE|DIR|VIDEO [output=...] [faces=true] [mode=resize|native]`.

MODEL is a checkpoint, a run folder, or an exported `.onnx` (or `.tflite`) file. Images of any
size come back at their own size: `mode=resize` (default) runs the network at its training size
and resizes back; `mode=native` reflect-pads to a multiple of 32 and crops back (see
`toonclip.inference`). `faces=true` stylises each detected face instead of the whole picture.
`region=person|background [mask=auto|grabcut|FILE.onnx]` stylises only the person or only the
background (see `toonclip.stylize.regions`); there `feather` is the seam's width in pixels.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from toonclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

OPTIONS = (
    "input",
    "output",
    "mode",
    "size",
    "faces",
    "region",
    "mask",
    "detector",
    "margin",
    "feather",
    "strength",
    "threads",
    "progress",
)


def build_transform(
    model,
    mode="resize",
    size=None,
    faces=False,
    detector=None,
    margin=0.4,
    feather=None,
    strength=1.0,
    video=False,
    region="all",
    mask="auto",
    threads=None,
):
    """The (H, W, 3) uint8 -> (H, W, 3) uint8 callable for a loaded model and options.

    feather: with faces=true, the soft edge as a fraction of the face radius (0.01-1, default
    0.25); with region=person|background, the seam's half-width in pixels (default 8).
    threads: for a mask .onnx.
    """
    from toonclip.export.runtime import make_stylizer
    from toonclip.stylize.faces import BoxSmoother, FaceDetector, FaceStylizer, blend

    if region != "all":
        from toonclip.stylize.masks import make_masker
        from toonclip.stylize.regions import MaskSmoother, RegionStylizer

        masker = make_masker(mask, detector, video, threads)
        return RegionStylizer(
            make_stylizer(model, mode, size),
            masker,
            region,
            8.0 if feather is None else feather,
            strength,
            MaskSmoother() if video else None,
        )

    if faces:
        # crops are stylised at the model's own scale, whatever mode= says for whole frames
        crop = make_stylizer(model, "resize", size)
        return FaceStylizer(
            crop,
            FaceDetector(detector),
            margin,
            0.25 if feather is None else feather,
            strength,
            BoxSmoother() if video else None,
        )
    whole = make_stylizer(model, mode, size)
    if strength >= 1.0:
        return whole
    return lambda image: blend(image, whole(image), strength)


def _flag(opts: dict, key: str, default: bool) -> bool:
    from toonclip.cli import parse_bool

    return parse_bool(key, opts[key]) if key in opts else default


def _float(opts: dict, key: str, default: float, lo: float, hi: float, unit: str = "") -> float:
    try:
        value = float(opts.get(key, default))
    except ValueError as exc:
        raise ConfigError(f"{key}={opts[key]}: expected a number") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"{key}={value:g}: must be between {lo:g} and {hi:g}{unit}")
    return value


def _region(opts: dict, faces: bool) -> tuple[str, float]:
    """region= and the feather that goes with it (px with a region, a fraction with faces)."""
    from toonclip.stylize.regions import REGIONS

    region = opts.get("region", "all")
    if region not in REGIONS:
        raise ConfigError(f"region={region}: use region=all, region=person or region=background")
    if region == "all":
        if "mask" in opts:
            raise ConfigError(f"mask={opts['mask']} needs region=person or region=background")
        return region, _float(opts, "feather", 0.25, 0.01, 1.0, " (a fraction of the face)")
    if faces:
        raise ConfigError(
            f"faces=true and region={region} do not combine (faces=true stylises face crops); "
            "drop one of them"
        )
    return region, _float(opts, "feather", 8.0, 0.0, 256.0, " px with region=")


def region_note(fn, unit: str = "image(s)") -> str:
    """' (region=..., mask: ...)' for the closing line, '' without a region."""
    from toonclip.stylize.regions import RegionStylizer

    if not isinstance(fn, RegionStylizer):
        return ""
    missed = getattr(fn.masker, "no_face", 0)
    extra = f"; no face in {missed} {unit}: centred seed" if missed else ""
    return f" (region={fn.region}, mask: {fn.source}{extra})"


def default_output(src: Path, kind: str) -> Path:
    if kind == "folder":
        return src.with_name(src.name + "_toon")
    suffix = ".mp4" if kind == "video" else src.suffix
    return src.with_name(f"{src.stem}_toon{suffix}")


def cli(argv: list[str]) -> int:
    from toonclip.cli import parse_options
    from toonclip.data.io import is_image_file
    from toonclip.export.runtime import load_model
    from toonclip.stylize.images import stylize_folder, stylize_image
    from toonclip.stylize.video import VIDEO_EXTENSIONS, is_video_file, stylize_video

    positionals, opts = parse_options(argv, "toonclip stylize", OPTIONS)
    if len(positionals) != 1 or "input" not in opts:
        raise ConfigError("usage: toonclip stylize MODEL input=IMAGE|DIR|VIDEO [output=PATH]")
    src = Path(opts["input"])
    if not src.exists():
        raise DataError(f"input {src} does not exist")
    if src.is_dir():
        kind = "folder"
    elif is_video_file(src):
        kind = "video"
    elif is_image_file(src):
        kind = "image"
    else:
        raise DataError(f"input {src} is not an image or a video ({', '.join(VIDEO_EXTENSIONS)})")
    mode = opts.get("mode", "resize")
    if mode not in ("resize", "native"):
        raise ConfigError(f"mode={mode}: use mode=resize or mode=native")
    faces, progress = _flag(opts, "faces", False), _flag(opts, "progress", True)
    region, feather = _region(opts, faces)
    threads = int(opts["threads"]) if "threads" in opts else None
    model = load_model(positionals[0], threads)
    fn = build_transform(
        model,
        mode,
        int(opts["size"]) if "size" in opts else None,
        faces,
        opts.get("detector"),
        _float(opts, "margin", 0.4, 0.0, 2.0),
        feather,
        _float(opts, "strength", 1.0, 0.0, 1.0),
        video=kind == "video",
        region=region,
        mask=opts.get("mask", "auto"),
        threads=threads,
    )
    dst = Path(opts.get("output") or default_output(src, kind))
    if kind == "folder":
        result = stylize_folder(fn, src, dst, progress)
        print(
            f"wrote {result['written']} images to {dst}"
            + (f"; {len(result['failed'])} unreadable, skipped" if result["failed"] else "")
            + region_note(fn)
        )
        if result["failed"]:  # exit 1 on a partial failure, as predict does
            names = ", ".join(Path(f).name for f in result["failed"][:5])
            print(
                f"error: {len(result['failed'])} input(s) could not be decoded: {names}",
                file=sys.stderr,
            )
            return 1
        return 0
    if kind == "video":
        info = stylize_video(fn, src, dst, progress)
        print(
            f"wrote {dst}: {info['frames']} frames at {info['fps']:.3g} fps, "
            f"{info['size'][0]}x{info['size'][1]}, audio {'kept' if info['audio'] else 'none'}"
            + region_note(fn, "frame(s)")
        )
        return 0
    if dst.is_dir() or not dst.suffix:
        dst = dst / src.name
    stylize_image(fn, src, dst)
    note = f" ({fn.last_count} face(s))" if faces else region_note(fn)
    print(f"wrote {dst}{note}")
    return 0
