"""`toonclip stylize`: images of any size, folders, a 10-frame video, faces, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, one_error, stylize
from PIL import Image

from toonclip.cli import main

ARCH, ENCODER, SIZE = SMALL


@pytest.fixture(scope="module")
def ckpt(small_checkpoint) -> Path:
    return small_checkpoint


@pytest.fixture(scope="module")
def onnx_model(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    assert main(["export", f"ckpt={ckpt}", f"out={out}", "opset=17", "dynamic=true"]) == 0
    return out


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([120 + 90 * np.sin(4 * xx + c) * np.cos(3 * yy) for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def draw_face(size: int = 256) -> np.ndarray:
    """A flat cartoon-ish face (hair, skin, brows, eyes, nose, mouth) OpenCV's Haar cascade finds."""
    import cv2

    img = np.full((size, size, 3), (70, 90, 120), np.uint8)
    s, c = size * 0.22, (size // 2, size // 2)

    def pt(dx, dy):
        return int(c[0] + dx * s), int(c[1] + dy * s)

    def ax(a, b):
        return max(1, int(a * s)), max(1, int(b * s))

    cv2.ellipse(img, pt(0, -0.35), ax(1.05, 1.2), 0, 180, 360, (60, 40, 30), -1)
    cv2.ellipse(img, c, ax(0.85, 1.1), 0, 0, 360, (225, 180, 150), -1)
    for side in (-1, 1):
        cv2.ellipse(img, pt(0.35 * side, -0.45), ax(0.22, 0.06), 0, 0, 360, (80, 55, 40), -1)
        cv2.ellipse(img, pt(0.35 * side, -0.22), ax(0.17, 0.09), 0, 0, 360, (250, 250, 250), -1)
        cv2.circle(img, pt(0.35 * side, -0.22), max(1, int(0.08 * s)), (40, 30, 30), -1)
    cv2.ellipse(img, pt(0, 0.15), ax(0.1, 0.2), 0, 0, 360, (200, 150, 125), -1)
    cv2.ellipse(img, pt(0, 0.55), ax(0.3, 0.08), 0, 0, 360, (150, 60, 60), -1)
    return cv2.GaussianBlur(img, (0, 0), size / 256)


def write_video(path: Path, frames: int, fps: int = 12, audio: bool = True, h=48, w=80) -> Path:
    import av

    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    sound = out.add_stream("aac", rate=16000) if audio else None
    if sound is not None:
        sound.layout = "mono"
    for i in range(frames):
        frame = photo(h, w, seed=i)
        frame[:, (i * 6) % w : (i * 6) % w + 10] = 255  # a bar moving across
        for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
    out.mux(video.encode(None))
    if sound is not None:
        t = np.arange(int(16000 * frames / fps)) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    out.close()
    return path


@pytest.mark.parametrize("mode", ["resize", "native"])
def test_image_of_any_size_comes_back_same_size(ckpt, tmp_path, capsys, mode):
    src = tmp_path / "odd.jpg"
    Image.fromarray(photo(50, 70)).save(src, quality=95)
    dst = tmp_path / "out" / "odd.png"
    code, out, err = stylize(capsys, ckpt, f"input={src}", f"output={dst}", f"mode={mode}")
    assert code == 0, err
    result = np.asarray(Image.open(dst))
    assert result.shape == (50, 70, 3)
    assert np.abs(result.astype(int) - photo(50, 70).astype(int)).mean() > 5  # it did something


def test_onnx_model_gives_the_checkpoint_picture(ckpt, onnx_model, tmp_path, capsys):
    src = tmp_path / "face.png"
    Image.fromarray(photo(90, 60)).save(src)
    for name, model in (("ckpt.png", ckpt), ("onnx.png", onnx_model)):
        code, _, err = stylize(capsys, model, f"input={src}", f"output={tmp_path / name}")
        assert code == 0, err
    a = np.asarray(Image.open(tmp_path / "ckpt.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "onnx.png")).astype(int)
    assert a.shape == b.shape == (90, 60, 3)
    assert np.abs(a - b).max() <= 2  # same pre/post-processing, same maths


def test_folder_with_progress_skips_unreadable(ckpt, tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.jpg", "b.png", "sub/c.jpg"]):
        Image.fromarray(photo(40 + 8 * i, 64, seed=i)).save(src / name)
    (src / "notes.txt").write_text("not an image")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    dst = tmp_path / "toons"
    code, out, err = stylize(capsys, ckpt, f"input={src}", f"output={dst}")
    assert code == 1 and "1 input(s) could not be decoded: broken.jpg" in err  # partial failure
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.*")) == [
        "a.jpg",
        "b.png",
        "sub/c.jpg",
    ]
    assert "wrote 3 images" in out and "1 unreadable, skipped" in out
    assert Image.open(dst / "sub" / "c.jpg").size == (64, 56)


def test_video_frame_by_frame_keeps_rate_size_and_audio(ckpt, tmp_path, capsys):
    import av

    src = write_video(tmp_path / "clip.mp4", frames=10, fps=12)
    dst = tmp_path / "toon.mp4"
    code, out, err = stylize(capsys, ckpt, f"input={src}", f"output={dst}")
    assert code == 0, err
    assert "10 frames at 12 fps, 80x48, audio kept" in out
    with av.open(str(dst)) as container:
        video = container.streams.video[0]
        assert video.average_rate == Fraction(12)
        assert (video.codec_context.width, video.codec_context.height) == (80, 48)
        assert [s.type for s in container.streams] == ["video", "audio"]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10


def test_feathered_paste_changes_only_the_face():
    from toonclip.stylize.faces import FaceStylizer, feather_mask

    image = np.full((100, 120, 3), 50, np.uint8)
    white = FaceStylizer(
        lambda crop: np.full_like(crop, 250), lambda img: [(40, 30, 20, 20)], margin=0.5
    )
    out = white(image).astype(int)
    assert white.last_count == 1
    assert out[40, 50].tolist() == [250, 250, 250]  # face centre: the cartoon
    assert (out[:15] == 50).all() and (out[:, :25] == 50).all()  # outside the crop: untouched
    rim = out[40, 31]  # inside the crop, near its edge: a blend, no hard seam
    assert 50 <= rim[0] < 250
    mask = feather_mask(41, 41)
    assert mask[20, 20] == 1.0 and mask[0, 0] == 0.0 and 0 < mask[20, 3] < 1


def test_box_smoother_damps_jitter_and_bridges_missed_frames():
    from toonclip.stylize.faces import BoxSmoother

    rng = np.random.default_rng(0)
    smoother, raw, smooth = BoxSmoother(patience=2), [], []
    for _ in range(30):
        box = (100 + int(rng.integers(-8, 9)), 80 + int(rng.integers(-8, 9)), 60, 60)
        raw.append(box[0])
        smooth.append(smoother([box])[0][0])
    assert np.std(np.diff(smooth)) < 0.6 * np.std(np.diff(raw))
    assert len(smoother([])) == 1 and len(smoother([])) == 1  # a missed frame keeps the head
    assert smoother([]) == []  # ... until `patience` frames pass


def test_faces_true_on_a_detectable_face(ckpt, tmp_path, capsys):
    from toonclip.stylize.faces import find_cascade

    if find_cascade() is None:
        pytest.skip("this OpenCV bundles no Haar cascade (OpenCV 5); see faces.py")
    face = draw_face(256)
    canvas = np.full((256, 448, 3), (70, 90, 120), np.uint8)
    canvas[:, 96:352] = face
    src, dst = tmp_path / "group.png", tmp_path / "toon.png"
    Image.fromarray(canvas).save(src)
    code, out, err = stylize(capsys, ckpt, f"input={src}", f"output={dst}", "faces=true")
    assert code == 0, err
    assert "(1 face(s))" in out
    result = np.asarray(Image.open(dst)).astype(int)
    assert (result[:, :20] == canvas[:, :20]).all()  # far from the face: untouched
    assert np.abs(result[100:160, 200:250] - canvas[100:160, 200:250]).mean() > 5


def test_faces_detector_errors_are_one_line(ckpt, tmp_path, capsys, monkeypatch):
    from toonclip.stylize import faces

    src = tmp_path / "p.png"
    Image.fromarray(photo(64, 64)).save(src)
    code, _, err = stylize(capsys, ckpt, f"input={src}", "faces=true", "detector=/no/such.xml")
    assert code == 2 and "detector=/no/such.xml does not exist" in one_error(err)
    # An OpenCV 5 wheel bundles no cascade; this one does, so play OpenCV 5.
    monkeypatch.setattr(faces, "find_cascade", lambda: None)
    code, _, err = stylize(capsys, ckpt, f"input={src}", "faces=true")
    line = one_error(err)
    assert code == 2 and "opencv-python-headless<5" in line and "detector=FILE" in line


def make_bad(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nope.jpg"
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    elif kind == "fake_jpg":
        path = tmp_path / "fake.jpg"
        path.write_text("not really a jpeg")
    elif kind == "empty_video":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    else:  # a container with audio only
        import av

        path = tmp_path / "audio_only.mp4"
        with av.open(str(path), "w") as out:
            sound = out.add_stream("aac", rate=16000)
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((1, 2048), np.float32), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 16000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("missing", "does not exist"),
        ("text", "not an image or a video"),
        ("fake_jpg", "cannot decode image"),
        ("empty_video", "cannot read video"),
        ("no_video_stream", "has no video stream"),
    ],
)
def test_bad_input_one_clear_line(ckpt, tmp_path, capsys, kind, needle):
    src = make_bad(tmp_path, kind)
    code, _, err = stylize(
        capsys,
        ckpt,
        f"input={src}",
        f"output={tmp_path / 'o.mp4'}" if "video" in kind else f"output={tmp_path / 'o.png'}",
    )
    assert code == 2
    assert needle in one_error(err)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["mode=zoom"], "mode=zoom"), (["strength=2"], "strength=2"), (["colour=red"], "colour")],
)
def test_bad_options_one_clear_line(ckpt, tmp_path, capsys, args, needle):
    src = tmp_path / "p.png"
    Image.fromarray(photo(32, 32)).save(src)
    code, _, err = stylize(capsys, ckpt, f"input={src}", *args)
    assert code == 2 and needle in one_error(err)


def test_native_mode_needs_a_dynamic_onnx(ckpt, tmp_path, capsys):
    fixed = tmp_path / "fixed.onnx"
    assert main(["export", f"ckpt={ckpt}", f"out={fixed}", "opset=17"]) == 0
    src = tmp_path / "p.png"
    Image.fromarray(photo(32, 32)).save(src)
    capsys.readouterr()
    code, _, err = stylize(capsys, fixed, f"input={src}", "mode=native")
    assert code == 2 and "dynamic=true" in one_error(err)
