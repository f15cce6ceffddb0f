"""`moving_face_clip` (toonclip.data.synthetic) makes a deterministic test clip; `read_video` /
`write_video` read and write video files with PyAV, the library `toonclip stylize` uses.

`toonclip temporal MODEL... video=FILE|synthetic` prints one row per model (checkpoint, run
folder, .onnx or .tflite, each run through the same Stylizer as `toonclip stylize`) on one clip:
the first `frames=60` frames of the video, scaled so the shorter side is `size=` (default: the
first model's training size), or the synthetic clip at size x size. The input's flow and its own
warping error are computed once and shared by every row. `out=DIR` writes temporal.md, .json
and .csv; `videos=true` also writes the input and every model's output clip there.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from toonclip.errors import ConfigError, DataError
from toonclip.evaluation.temporal import (
    FLOW_METHODS,
    Frames,
    clip_warps,
    temporal_metrics,
    warping_error,
)

log = logging.getLogger(__name__)

USAGE = (
    "toonclip temporal MODEL... video=FILE|synthetic [frames=60] [size=N] [flow=dis|farneback] "
    "[mode=resize|native] [threads=1] [seed=0] [out=DIR] [videos=true]"
)
OPTIONS = ("video", "frames", "size", "flow", "mode", "threads", "seed", "out", "videos")
FIELDS = ("model", "frames", "flicker", "warp_error", "warp_error_input", "seconds")

# --- video files ---------------------------------------------------------------------------


def _av():
    try:
        import av
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "video files need PyAV: pip install -e '.[video]' (or use video=synthetic)"
        ) from exc
    return av


def read_video(path: str | Path, max_frames: int) -> tuple[list[np.ndarray], float]:
    """The first `max_frames` frames of a video as (H, W, 3) uint8 RGB, and its frame rate.

    Decoded with PyAV like `toonclip stylize` decodes. Raises DataError for a missing file, a file
    without a video stream, or one that cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video={path} does not exist; pass a video file or video=synthetic")
    av = _av()
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise DataError(f"video={path} has no video stream")
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"video={path} cannot be read as a video: {first}") from exc
    return frames, rate


def write_video(frames: Frames, path: str | Path, fps: float = 25) -> Path:
    """Write (H, W, 3) uint8 RGB frames to a video file (H.264 where available, else MPEG-4).

    H and W are rounded down to even numbers (yuv420p needs them).
    """
    av = _av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = None
        for frame in frames:
            if stream is None:
                h264 = "libx264" in av.codecs_available
                codec, options = ("libx264", {"crf": "18"}) if h264 else ("mpeg4", {"qscale": "3"})
                rate = Fraction(fps).limit_denominator(1001)  # 29.97 stays 30000/1001
                stream = out.add_stream(codec, rate=rate, options=options)
                stream.pix_fmt = "yuv420p"
                stream.height, stream.width = frame.shape[0] & ~1, frame.shape[1] & ~1
            image = np.ascontiguousarray(frame[: stream.height, : stream.width])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if stream is not None:
            out.mux(stream.encode(None))  # flush the encoder
    return path


def resize_short_side(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 scaled so that its shorter side is `size` px (aspect ratio kept)."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    if scale == 1:
        return frame
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, new, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


# --- the command -----------------------------------------------------------------------------


def _int_option(opts: dict, key: str, default: int, minimum: int, example: str) -> int:
    text = opts.get(key, default)
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum:
        raise ConfigError(f"{key}={text}: give an integer >= {minimum}, e.g. {key}={example}")
    return value


def _labels(models) -> list[str]:
    """Row names: the file or folder name, the whole path where two models share a name."""
    names = [m.name for m in models]
    return [str(m.path) if names.count(m.name) > 1 else m.name for m in models]


def stylize_clip(fn: Callable[[np.ndarray], np.ndarray], frames: list[np.ndarray]):
    """Run an (H, W, 3) uint8 -> (H, W, 3) uint8 callable over a clip; (frames, seconds)."""
    start = time.perf_counter()
    out = [fn(f) for f in frames]
    return out, time.perf_counter() - start


def markdown(rows: list[dict], clip: str, flow: str, valid: float) -> str:
    head = ["model", "frames", "flicker", "warp error", "input warp error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["frames"]), f"{r['flicker']:.3f}"]
        cells += [f"{r['warp_error']:.6f}", f"{r['warp_error_input']:.6f}"]
        lines.append("| " + " | ".join(cells) + " |")
    flow = "DIS (preset medium)" if flow == "dis" else "Farneback"
    lines += [
        "",
        f"Clip: {clip}. Flow: {flow} on the input frames; {valid:.0%} of pixels not occluded.",
        "",
        "- flicker: mean |change| between consecutive output frames / the same for the input",
        "  (1 = changes as much as the input, > 1 adds flicker, 0 = frozen).",
        "- warp error: mean squared difference (RGB in [0, 1]) between each output frame and the",
        "  previous one warped by the input's flow, occluded pixels masked (Lai et al. 2018).",
        "- input warp error: the same for the input clip, the floor to read warp errors against.",
    ]
    return "\n".join(lines)


def load_clip(opts: dict, size: int, n_frames: int) -> tuple[list[np.ndarray], float, str]:
    """The clip named by `video=`: (frames at `size` px short side, fps, a one-line description)."""
    source = opts["video"]
    if source == "synthetic":
        from toonclip.data.synthetic import moving_face_clip

        seed = _int_option(opts, "seed", 0, 0, "0")
        frames = moving_face_clip(n_frames, size, seed)
        return frames, 25.0, f"synthetic moving face (seed {seed}), {n_frames} frames {size}x{size}"
    frames, fps = read_video(source, n_frames)
    if len(frames) < 2:
        raise DataError(
            f"video={source} has {len(frames)} frame(s); the temporal metrics need at least 2: "
            "pass a longer clip"
        )
    frames = [resize_short_side(f, size) for f in frames]
    h, w = frames[0].shape[:2]
    return frames, fps, f"{Path(source).name}, first {len(frames)} frames at {w}x{h}"


def cli(argv: list[str]) -> int:
    import torch

    from toonclip.cli import parse_options
    from toonclip.export.runtime import load_model, make_stylizer

    paths, opts = parse_options(argv, "toonclip temporal", OPTIONS)
    if not paths:
        raise ConfigError(f"usage: {USAGE}")
    if "video" not in opts:
        raise ConfigError(f"video= is required (a video file, or video=synthetic); usage: {USAGE}")
    n_frames = _int_option(opts, "frames", 60, 2, "60")
    # One thread by default: this is no speed test, and on a busy machine OpenMP's spin-waiting
    # made 2 threads on 2 shared cores 15 times slower than 1.
    threads = _int_option(opts, "threads", 1, 1, "2")
    method, mode = opts.get("flow", "dis"), opts.get("mode", "resize")
    if method not in FLOW_METHODS:
        raise ConfigError(f"flow={method}: use flow={' or flow='.join(FLOW_METHODS)}")
    if mode not in ("resize", "native"):
        raise ConfigError(f"mode={mode}: use mode=resize or mode=native")
    videos = opts.get("videos", "false").lower()
    if videos not in ("true", "false"):
        raise ConfigError(f"videos={opts['videos']}: use videos=true or videos=false")
    if videos == "true" and "out" not in opts:
        raise ConfigError("videos=true writes the clips into out=DIR: give out=DIR too")
    torch.set_num_threads(threads)
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        models = [load_model(p, threads) for p in paths]
        # One clip for every row: the default size is the first model's training size.
        size = _int_option(opts, "size", models[0].size, 32, str(models[0].size))
        frames, fps, clip = load_clip(opts, size, n_frames)
        log.info("optical flow (%s) on %d frames of %s", method, len(frames), clip)
        warps = clip_warps(frames, method)
        input_error = warping_error(frames, frames, warps=warps)
        rows, outputs = [], []
        for model, label in zip(models, _labels(models), strict=True):
            out, seconds = stylize_clip(make_stylizer(model, mode), frames)
            row = temporal_metrics(frames, out, warps=warps, input_error=input_error)
            rows.append({"model": label, **row, "seconds": round(seconds, 2)})
            outputs.append(out if videos == "true" else None)  # kept only to be written
            log.info("%s: %d frames in %.1f s", label, len(out), seconds)
    finally:
        cv2.setNumThreads(cv2_threads)
    valid = float(np.mean([w.valid.mean() for w in warps]))
    table = markdown(rows, clip, method, valid)
    print(table)
    if "out" in opts:
        out_dir = Path(opts["out"])
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "temporal.md").write_text(table + "\n")
        meta = {"clip": clip, "flow": method, "mode": mode, "size": size, "valid_fraction": valid}
        (out_dir / "temporal.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
        with open(out_dir / "temporal.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        if videos == "true":
            write_video(frames, out_dir / "input.mp4", fps)
            for i, (row, out) in enumerate(zip(rows, outputs, strict=True)):
                write_video(out, out_dir / f"{i}_{Path(row['model']).name}.mp4", fps)
        print(f"wrote {out_dir / 'temporal.md'}, temporal.json and temporal.csv")
    return 0
