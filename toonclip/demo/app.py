"""`toonclip demo MODEL... [port=7860] [host=127.0.0.1]`: a Gradio app to try models on faces.

Upload a photo or take a webcam snapshot, pick a model, blend photo and cartoon with the
strength slider, optionally stylise only the detected faces, or only the person or only the
background (`region`; the person mask comes from `mask=auto|grabcut|FILE.onnx`, see
`toonclip.stylize.masks`). Local by default (127.0.0.1, no share link, analytics off,
server-side rendering off so no Node process, bundled fonts only).
Bad uploads get a message, never a stack trace: files over `max_mb` are refused by the upload
endpoint, non-images and images over `max_side` pixels by the handler.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from toonclip.errors import ConfigError, ToonclipError

# Before gradio is imported anywhere: no usage reporting or version check over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

log = logging.getLogger(__name__)

OPTIONS = ("host", "port", "max_mb", "max_side", "mode", "detector", "mask", "threads")


class Demo:
    """The demo's logic, without any UI: testable directly.

    models: {display name: LoadedModel}. `run(path, name, strength, faces, region)` returns the
    cartoon as (H, W, 3) uint8, or raises ToonclipError with a message for the user. mask: the
    person mask source for region=person|background (auto | grabcut | FILE.onnx).
    """

    def __init__(
        self,
        models: dict,
        max_mb: float = 10.0,
        max_side: int = 4096,
        mode: str = "resize",
        detector: str | None = None,
        mask: str = "auto",
        threads: int | None = None,
    ):
        from toonclip.stylize.masks import make_masker

        if not models:
            raise ConfigError("usage: toonclip demo MODEL... (a checkpoint, run folder or .onnx)")
        self.models, self.max_mb, self.max_side = models, float(max_mb), int(max_side)
        self.mode, self.detector = mode, detector
        self._cache: dict = {}
        # one masker for every model, made now: a bad mask file fails at start, not on a click
        self.masker = make_masker(mask, detector, threads=threads)

    def transform(self, name: str, faces: bool, region: str = "all"):
        from toonclip.stylize.cli import build_transform
        from toonclip.stylize.regions import REGIONS

        if region not in REGIONS:
            raise ToonclipError(f"unknown region '{region}'; pick one of {', '.join(REGIONS)}")
        if faces and region != "all":
            raise ToonclipError(
                f"'faces only' and region '{region}' do not combine: untick faces only, or pick "
                "region all"
            )
        key = (name, faces, region)
        if key not in self._cache:  # detector/masker/Stylizer set-up once per model and mode
            if name not in self.models:
                raise ToonclipError(f"unknown model '{name}'; pick one of {', '.join(self.models)}")
            self._cache[key] = build_transform(
                self.models[name],
                self.mode,
                faces=faces,
                detector=self.detector,
                region=region,
                mask=self.masker,
            )
        return self._cache[key]

    def load(self, path: str | None) -> np.ndarray:
        from toonclip.data.io import load_rgb

        if not path:
            raise ToonclipError("no picture yet: upload a face photo or take a webcam snapshot")
        path = Path(path)
        mb = path.stat().st_size / 1e6
        if mb > self.max_mb:
            raise ToonclipError(f"{path.name} is {mb:.1f} MB; the limit is {self.max_mb:g} MB")
        # The header says the size: refuse a huge picture before decoding it (a 140 KB PNG can
        # hold 12000x12000 px, gigabytes once decoded).
        from PIL import Image

        try:
            with Image.open(path) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001 - undecodable: load_rgb below says so in one line
            w = h = 0
        if max(w, h) > self.max_side:
            raise ToonclipError(
                f"the picture is {w}x{h} px; the limit is {self.max_side} px on the long side"
            )
        try:
            image = load_rgb(path)
        except ToonclipError as exc:
            raise ToonclipError(
                f"{path.name} is not an image this demo can read; upload a JPEG, PNG or WebP photo"
            ) from exc
        if max(image.shape[:2]) > self.max_side:
            h, w = image.shape[:2]
            raise ToonclipError(
                f"the picture is {w}x{h} px; the limit is {self.max_side} px on the long side"
            )
        return image

    def run(
        self,
        path: str | None,
        name: str,
        strength: float = 1.0,
        faces: bool = False,
        region: str = "all",
    ):
        from toonclip.stylize.faces import blend

        image = self.load(path)
        region = region or "all"
        fn = self.transform(name, bool(faces), region)
        if faces or region != "all":
            # FaceStylizer / RegionStylizer blend inside their feathered masks
            fn.strength = float(strength)
            return fn(image)
        return blend(image, fn(image), strength)


def build_app(demo: Demo):
    """The Gradio Blocks UI around a Demo."""
    import gradio as gr

    from toonclip.stylize.regions import REGIONS

    def on_click(path, name, strength, faces, region):
        try:
            return demo.run(path, name, strength, faces, region)
        except ToonclipError as exc:
            raise gr.Error(str(exc)) from exc

    names = list(demo.models)
    with gr.Blocks(title="toonclip demo") as app:
        gr.Markdown("## toonclip: face to cartoon\nUpload a face photo or take a webcam snapshot.")
        with gr.Row():
            photo = gr.Image(
                label="Face",
                sources=["upload", "webcam"],
                type="filepath",
                image_mode=None,
                elem_id="photo",
            )
            # no "share" button: it would upload to an external host
            cartoon = gr.Image(
                label="Cartoon",
                type="numpy",
                format="png",
                interactive=False,
                elem_id="cartoon",
                buttons=["download", "fullscreen"],
            )
        with gr.Row():
            model = gr.Dropdown(names, value=names[0], label="Model")
            strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength (photo → cartoon)")
            faces = gr.Checkbox(value=False, label="Faces only (detect, stylise, paste back)")
            region = gr.Radio(
                list(REGIONS),
                value="all",
                label="Region (person mask: stylise only the person, or only the background)",
                elem_id="region",
            )
        button = gr.Button("Stylize", variant="primary", elem_id="stylize")
        button.click(on_click, [photo, model, strength, faces, region], cartoon)
        _friendly_decode_errors(photo, gr)
    return app


def _friendly_decode_errors(component, gr) -> None:
    """Make the upload component's own decode failure (a non-image file) a readable message."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception as exc:  # noqa: BLE001 - PIL raises several types for bad files
            name = getattr(payload, "orig_name", None) or "the upload"
            raise gr.Error(
                f"{name} is not an image this demo can read; upload a JPEG, PNG or WebP photo"
            ) from exc

    component.preprocess = preprocess


def launch(
    app, host: str = "127.0.0.1", port: int | None = None, max_mb: float = 10.0, block: bool = True
):
    """Serve locally; returns (app, local_url). `block=False` returns at once (tests)."""
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        max_file_size=int(max_mb * 1e6),
        ssr_mode=False,
        enable_monitoring=False,
        quiet=True,
        prevent_thread_lock=not block,
        footer_links=[],
    )
    return app, url


def cli(argv: list[str]) -> int:
    from toonclip.cli import parse_options
    from toonclip.export.runtime import load_model

    paths, opts = parse_options(argv, "toonclip demo", OPTIONS)
    threads = int(opts["threads"]) if "threads" in opts else None
    models = {}
    for path in paths:
        model = load_model(path, threads)
        name = model.name if model.name not in models else str(model.path)
        models[name] = model
    demo = Demo(
        models,
        float(opts.get("max_mb", 10)),
        int(opts.get("max_side", 4096)),
        opts.get("mode", "resize"),
        opts.get("detector"),
        opts.get("mask", "auto"),
        threads,
    )
    host = opts.get("host", "127.0.0.1")
    if host not in ("127.0.0.1", "localhost"):
        log.warning("serving on %s: anyone who can reach this address can use the demo", host)
    port = int(opts["port"]) if "port" in opts else None
    print(f"toonclip demo on http://{host}:{port or 7860} (Ctrl+C to stop)")
    launch(build_app(demo), host, port, demo.max_mb, block=True)
    return 0
