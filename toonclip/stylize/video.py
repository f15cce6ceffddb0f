"""Stylising a video frame by frame with PyAV (FFmpeg's libraries, bundled in the `av` wheel).

The output keeps the input's frame rate (constant-rate output at the stream's average rate) and
frame size (rounded down to even numbers: H.264 in yuv420p needs them). The audio stream, when
there is one, is copied packet for packet (no re-encode) when the output container accepts its
codec; otherwise it is dropped with a warning. No ffmpeg executable is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from toonclip.errors import DataError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm")
H264_CONTAINERS = (".mp4", ".mov", ".m4v", ".mkv")


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _open(src: Path):
    import av

    try:
        return av.open(str(src))
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot read video {src}: {exc}") from exc


def _encoder(dst: Path) -> tuple[str, dict]:
    import av

    if dst.suffix.lower() in H264_CONTAINERS and "libx264" in av.codecs_available:
        return "libx264", {"crf": "18", "preset": "veryfast"}
    return "mpeg4", {"qscale": "3"}


def stylize_video(
    fn: Callable[[np.ndarray], np.ndarray], src: str | Path, dst: str | Path, progress: bool = True
) -> dict:
    """Stylise every frame of `src` ((H, W, 3) uint8 RGB each) into `dst`.

    Returns {"frames": n, "fps": float, "size": (w, h), "audio": bool}. Raises DataError for a
    file without a video stream, without any decodable frame, or that fails to decode.
    """
    import av
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise DataError(f"output {dst}: use a video suffix ({', '.join(VIDEO_EXTENSIONS)})")
    inp = _open(src)
    video = next((s for s in inp.streams if s.type == "video"), None)
    if video is None:
        inp.close()
        raise DataError(f"{src} has no video stream")
    audio = next((s for s in inp.streams if s.type == "audio"), None)
    rate = video.average_rate or video.guessed_rate or Fraction(25)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(dst), "w")
    codec, options = _encoder(dst)
    ostream = out.add_stream(codec, rate=rate, options=options)
    ostream.pix_fmt = "yuv420p"
    # set before anything is muxed (the header is written then); stylising keeps the frame size
    ostream.width, ostream.height = video.codec_context.width & ~1, video.codec_context.height & ~1
    oaudio = None
    if audio is not None:
        try:
            oaudio = out.add_stream_from_template(audio)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("audio of %s not copied (%s cannot hold it): %s", src, dst.suffix, exc)
    frames, bar = 0, tqdm(total=video.frames or None, desc="frames", disable=not progress)
    try:
        for packet in inp.demux(*(s for s in (video, audio) if s is not None)):
            if packet.stream is audio:
                if oaudio is not None and packet.dts is not None:
                    packet.stream = oaudio
                    out.mux(packet)
                continue
            for frame in packet.decode():
                image = fn(frame.to_ndarray(format="rgb24"))
                image = np.ascontiguousarray(image[: ostream.height, : ostream.width])
                new = av.VideoFrame.from_ndarray(image, format="rgb24")
                new.pts = frames  # time base is 1/rate: constant frame rate at the input's rate
                out.mux(ostream.encode(new))
                frames += 1
                bar.update()
        if frames:
            out.mux(ostream.encode(None))  # flush the encoder
    except av.error.FFmpegError as exc:
        raise DataError(f"cannot decode video {src}: {exc}") from exc
    finally:
        bar.close()
        out.close()
        inp.close()
        if frames == 0:
            dst.unlink(missing_ok=True)
    if frames == 0:
        raise DataError(f"video {src} has no frames")
    return {
        "frames": frames,
        "fps": float(rate),
        "size": (ostream.width, ostream.height),
        "audio": oaudio is not None,
    }
