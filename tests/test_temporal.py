"""Temporal stability: flicker and warping error on constructed clips, and `toonclip temporal`."""

from __future__ import annotations

import csv
import json
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from toonclip.cli import main
from toonclip.data.synthetic import moving_face_clip
from toonclip.errors import DataError
from toonclip.evaluation.temporal import clip_warps, flicker, temporal_metrics, warping_error
from toonclip.evaluation.temporal_cli import write_video


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    # 128 px: at 64 px the face moves under a pixel a frame and DIS's 12 px patches blur it.
    return moving_face_clip(10, 128, seed=0)


@pytest.fixture(scope="module")
def warps(clip):
    return clip_warps(clip)


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blurred colour noise: texture the optical flow can lock on to everywhere."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2)
    return np.clip((smooth - smooth.mean()) / smooth.std() * 40 + 128, 0, 255).astype(np.uint8)


def test_moving_face_clip_is_deterministic_and_moves():
    a, b = moving_face_clip(4, 48, seed=3), moving_face_clip(4, 48, seed=3)
    assert len(a) == 4 and a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], moving_face_clip(4, 48, seed=4)[0])
    assert all(np.abs(y.astype(int) - x).mean() > 0.5 for x, y in pairwise(a))


def test_identity_model_flickers_like_the_input(clip, warps):
    row = temporal_metrics(clip, [f.copy() for f in clip], warps=warps)
    assert row["flicker"] == 1.0
    assert row["warp_error"] == row["warp_error_input"] == warping_error(clip, clip)
    # The flow follows the synthetic motion: the floor is far below the frame difference.
    raw = np.mean([((b / 255.0 - a / 255.0) ** 2).mean() for a, b in pairwise(clip)])
    assert row["warp_error_input"] < raw / 10


def test_per_frame_noise_flickers_and_warps_worse(clip, warps):
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8) for f in clip]
    row = temporal_metrics(clip, noisy, warps=warps)
    assert row["flicker"] > 1.5
    assert row["warp_error"] > 5 * row["warp_error_input"]


def test_frozen_output_has_no_flicker_but_does_not_follow_the_motion(clip, warps):
    frozen = [clip[0]] * len(clip)
    row = temporal_metrics(clip, frozen, warps=warps)
    assert row["flicker"] == 0.0
    # Why the warping error is reported too: freezing is not temporal stability.
    assert row["warp_error"] > 5 * row["warp_error_input"]


def test_translation_is_followed_and_the_entering_edge_masked():
    big = texture(80, 120)
    frames = [big[8:72, 40 - 3 * t : 104 - 3 * t] for t in range(4)]  # content moves 3 px right
    warps = clip_warps(frames)
    for warp in warps:
        assert np.median(warp.map_x - np.arange(64)) == pytest.approx(-3, abs=0.05)
        assert not warp.valid[:, :3].any()  # entered this frame: no source in the previous one
        assert warp.valid[8:-8, 8:-8].all()
    error = warping_error(frames, frames, warps=warps)
    raw = np.mean([((b / 255.0 - a / 255.0) ** 2).mean() for a, b in pairwise(frames)])
    assert error < 1e-4 < raw / 100


def test_disoccluded_pixels_are_masked():
    """A square moving 8 px right over a still background uncovers a strip of background."""
    bg, square = texture(128, 128, seed=1), texture(64, 64, seed=2)
    frames = []
    for x in (16, 24):
        f = bg.copy()
        f[32:96, x : x + 64] = square
        frames.append(f)
    valid = clip_warps(frames)[0].valid
    assert valid[40:88, 16:24].mean() < 0.05  # the uncovered strip: hidden in the first frame
    assert valid[40:88, 32:80].mean() > 0.95  # inside the square: followed
    assert valid[:, 112:].mean() > 0.95  # still background: followed


@pytest.mark.parametrize(
    ("outputs", "needle"),
    [
        (lambda c: c[:1], "at least 2"),
        (lambda c: c[:-1], "does not match"),
        (lambda c: [f[:32] for f in c], "does not match"),
    ],
)
def test_bad_clips_raise_data_error(clip, outputs, needle):
    with pytest.raises(DataError, match=needle):
        temporal_metrics(clip, outputs(clip))


def test_still_clip_flicker_is_an_error_not_nan():
    still = [np.full((32, 32, 3), 100, np.uint8)] * 3
    with pytest.raises(DataError, match="still clip"):
        flicker(still, still)
    assert warping_error(still, still) == 0.0


# --- the command ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory) -> Path:
    return write_video(moving_face_clip(8, 64), tmp_path_factory.mktemp("clip") / "face.mp4")


def test_temporal_command_table_json_csv(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "temporal"
    run_dir = small_checkpoint.parent.parent  # the run folder: same model, second row
    args = [str(small_checkpoint), str(run_dir), "video=synthetic", "frames=6", "threads=1"]
    assert main(["temporal", *args, f"out={out}", "videos=true"]) == 0
    text = capsys.readouterr().out
    assert "| model | frames | flicker | warp error | input warp error |" in text
    assert "synthetic moving face (seed 0), 6 frames 64x64" in text  # size: the model's
    data = json.loads((out / "temporal.json").read_text())
    ckpt_row, run_row = data["rows"]
    assert ckpt_row["model"] == "best.ckpt" and ckpt_row["frames"] == 6
    assert ckpt_row["flicker"] >= 0 and ckpt_row["warp_error"] >= 0
    # The same weights give the same figures; the input's floor is shared by every row.
    assert ckpt_row["flicker"] == run_row["flicker"]
    assert ckpt_row["warp_error_input"] == run_row["warp_error_input"] > 0
    with open(out / "temporal.csv") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == ["best.ckpt", run_dir.name]
    assert {p.name for p in out.glob("*.mp4")} == {
        "input.mp4",
        "0_best.ckpt.mp4",
        f"1_{run_dir.name}.mp4",
    }


def test_temporal_command_on_a_video_file(small_checkpoint, clip_mp4, capsys):
    args = [str(small_checkpoint), f"video={clip_mp4}", "frames=5", "size=48", "flow=farneback"]
    assert main(["temporal", *args, "threads=1"]) == 0
    text = capsys.readouterr().out
    assert "face.mp4, first 5 frames at 48x48" in text and "Farneback" in text
    assert "| best.ckpt | 5 |" in text


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.mp4").write_text("not a video\n")
    write_video(moving_face_clip(1, 32), folder / "one.mp4")
    return {"unreadable": folder / "notes.mp4", "one": folder / "one.mp4"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "video= is required"),
        (["video=/nonexistent/clip.mp4"], "does not exist; pass a video file or video=synthetic"),
        (["video=@unreadable"], "cannot be read as a video"),
        (["video=@one"], "has 1 frame(s); the temporal metrics need at least 2"),
        (["video=synthetic", "frames=1"], "frames=1: give an integer >= 2"),
        (["video=synthetic", "size=abc"], "size=abc: give an integer >= 32"),
        (["video=synthetic", "flow=lk"], "flow=lk: use flow=dis or flow=farneback"),
        (["video=synthetic", "videos=true"], "give out=DIR too"),
        (["video=synthetic", "clip=x"], "toonclip temporal has no option 'clip'"),
    ],
)
def test_temporal_bad_input_one_line(small_checkpoint, bad_videos, capsys, args, needle):
    args = [a.replace("@unreadable", str(bad_videos["unreadable"])) for a in args]
    args = [a.replace("@one", str(bad_videos["one"])) for a in args]
    assert main(["temporal", str(small_checkpoint), *args, "threads=1"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err


def test_temporal_without_models_is_usage_error(capsys):
    assert main(["temporal", "video=synthetic"]) == 2
    assert "usage: toonclip temporal MODEL" in capsys.readouterr().err
