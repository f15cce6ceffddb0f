"""`toonclip demo`: the handler's checks, and the real app driven in headless Chromium."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonclip.errors import ToonclipError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def demo(small_checkpoint):
    from toonclip.demo.app import Demo
    from toonclip.export.runtime import load_model

    return Demo({"tiny": load_model(small_checkpoint)}, max_mb=0.5, max_side=1024)


def face_png(path: Path, h: int = 120, w: int = 100) -> Path:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 2) % 256, (yy * 2) % 256, np.full_like(xx, 160)], -1).astype(np.uint8)
    inside = ((yy - h / 2) / (h * 0.35)) ** 2 + ((xx - w / 2) / (w * 0.3)) ** 2 < 1
    img[inside] = (220, 170, 140)
    Image.fromarray(img).save(path)
    return path


def test_run_returns_cartoon_of_same_size_and_strength_blends(demo, tmp_path):
    src = face_png(tmp_path / "f.png")
    photo = np.asarray(Image.open(src))
    full = demo.run(str(src), "tiny", 1.0, False)
    assert full.shape == photo.shape and full.dtype == np.uint8
    assert np.array_equal(demo.run(str(src), "tiny", 0.0, False), photo)
    half = demo.run(str(src), "tiny", 0.5, False).astype(int)
    expected = (photo.astype(int) + full.astype(int)) / 2
    assert np.abs(half - expected).max() <= 1


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        ("text", "not an image this demo can read"),
        ("big_file", "the limit is 0.5 MB"),
        ("big_pixels", "the limit is 1024 px"),
        ("none", "upload a face photo"),
    ],
)
def test_bad_uploads_get_a_message(demo, tmp_path, make, needle):
    path = tmp_path / "upload.png"
    if make == "text":
        path.write_text("definitely not a picture")
    elif make == "big_file":
        noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path)  # ~1 MB of incompressible PNG
    elif make == "big_pixels":
        Image.new("RGB", (1500, 20)).save(path)
    with pytest.raises(ToonclipError, match=needle):
        demo.run(None if make == "none" else str(path), "tiny")


@pytest.fixture(scope="module")
def masked_demo(small_checkpoint, tmp_path_factory):
    """A demo whose person masks come from a tiny segmentation .onnx (see test_regions)."""
    from test_regions import seg_model

    from toonclip.demo.app import Demo
    from toonclip.export.runtime import load_model

    mask = seg_model(tmp_path_factory.mktemp("seg") / "voc21.onnx", "voc21")
    return Demo({"tiny": load_model(small_checkpoint)}, mask=str(mask))


@pytest.mark.parametrize("region", ["person", "background"])
def test_region_stylises_one_side_of_the_person_mask(masked_demo, tmp_path, region):
    from test_regions import blob_scene, distances

    photo, truth = blob_scene(120, 100, seed=2)
    src = tmp_path / "p.png"
    Image.fromarray(photo).save(src)
    out = masked_demo.run(str(src), "tiny", 1.0, False, region)
    assert out.shape == photo.shape and out.dtype == np.uint8
    inside, outside = distances(truth)
    keep = (outside > 12) if region == "person" else (inside > 12)  # beyond mask error + seam
    take = (inside > 12) if region == "person" else (outside > 12)
    assert np.array_equal(out[keep], photo[keep])
    assert np.abs(out[take].astype(int) - photo[take]).mean() > 5
    assert np.array_equal(masked_demo.run(str(src), "tiny", 0.0, False, region), photo)


def test_region_choice_errors_are_messages(masked_demo, tmp_path):
    from toonclip.demo.app import Demo

    src = face_png(tmp_path / "f.png")
    with pytest.raises(ToonclipError, match="'faces only' and region 'person' do not combine"):
        masked_demo.run(str(src), "tiny", 1.0, True, "person")
    with pytest.raises(ToonclipError, match="unknown region 'face'"):
        masked_demo.run(str(src), "tiny", 1.0, False, "face")
    with pytest.raises(ToonclipError, match="mask=/no/seg.onnx does not exist"):
        Demo(masked_demo.models, mask="/no/seg.onnx")  # at start, not on the first click


def test_unknown_model_name_is_a_message(demo, tmp_path):
    with pytest.raises(ToonclipError, match="unknown model 'nope'"):
        demo.run(str(face_png(tmp_path / "f.png")), "nope")


def test_demo_cli_rejects_missing_model(capsys):
    from toonclip.cli import main

    assert main(["demo", "/nonexistent/best.ckpt"]) == 2
    assert "does not exist" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_browser_upload_face_get_cartoon_and_bad_uploads_get_messages(demo, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from toonclip.demo.app import build_app, launch

    app, url = launch(build_app(demo), port=free_port(), max_mb=demo.max_mb, block=False)
    assert url.startswith("http://127.0.0.1:")
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            outside = []
            page.on(
                "request",
                lambda r: (
                    outside.append(r.url)
                    if not r.url.startswith((url.rstrip("/"), "data:", "blob:"))
                    else None
                ),
            )
            page.goto(url)
            page.locator("#photo input[type=file]").set_input_files(
                str(face_png(tmp_path / "face.png", 96, 80))
            )
            page.wait_for_timeout(500)
            page.click("#stylize")
            img = page.wait_for_selector("#cartoon img", timeout=60_000)
            src = img.get_attribute("src")
            body = page.request.get(src).body()
            result = Image.open(io.BytesIO(body))
            assert result.size == (80, 96)

            # region=background: the face (an ellipse GrabCut cuts out) stays as it was
            page.locator("#region label", has_text="background").click()
            page.click("#stylize")
            page.wait_for_function(
                "old => document.querySelector('#cartoon img')?.getAttribute('src') !== old",
                arg=src,
                timeout=60_000,
            )
            body = page.request.get(page.locator("#cartoon img").get_attribute("src")).body()
            result = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)
            photo = np.asarray(Image.open(tmp_path / "face.png")).astype(int)
            assert result.shape == photo.shape
            assert np.array_equal(result[40:56, 32:48], photo[40:56, 32:48])  # the face
            assert np.abs(result[:8] - photo[:8]).mean() > 5  # the background: stylised

            bad = tmp_path / "bad.png"
            bad.write_text("not an image")
            page.locator("#photo input[type=file]").set_input_files(str(bad))
            page.wait_for_timeout(500)
            page.click("#stylize")
            page.get_by_text("bad.png is not an image this demo can read").wait_for(timeout=30_000)

            big = tmp_path / "big.png"  # over max_mb: refused by the upload endpoint
            noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
            Image.fromarray(noise).save(big)
            page.locator("#photo input[type=file]").set_input_files(str(big))
            page.get_by_text("exceed", exact=False).first.wait_for(timeout=30_000)
            browser.close()
        assert outside == []  # nothing fetched from the internet (fonts, CDNs, analytics)
    finally:
        app.close()


def test_huge_upload_is_refused_from_its_header_before_decoding(demo, tmp_path, monkeypatch):
    import toonclip.data.io as io

    path = tmp_path / "huge.png"
    Image.new("L", (3000, 10)).save(path)  # a tiny file whose decoded size is what counts

    def no_decode(p):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(io, "load_rgb", no_decode)
    with pytest.raises(ToonclipError, match="3000x10 px; the limit is 1024 px"):
        demo.run(str(path), "tiny")
