"""Person masks for `region=person|background`: a segmentation model (ONNX) or OpenCV GrabCut.

A masker is a callable (H, W, 3) uint8 RGB -> (H, W) float32 in [0, 1], the person probability,
with a short `name` and a `describe` line saying where its masks come from. Nothing is
downloaded at run time. `make_masker` picks one for `mask=auto|grabcut|FILE.onnx`:

- `OnnxMasker` (`toonclip.stylize.segmodel`): a segmentation network in an `.onnx` file, from
  `mask=FILE.onnx`, or with `mask=auto` from the environment variable TOONCLIP_SEG_MODEL;
- `GrabCutMasker`: OpenCV GrabCut seeded by the largest face the face detector finds, on the
  frame scaled to `work` px (128) on its long side: the face box's core is sure person; the head
  (hair included), the neck and rounded shoulders with the torso below them probable person;
  the image border, the band well above the head and the sides of the head sure background;
  the rest probable background. Only what is connected to the face core is kept. Without a face
  it seeds a centred rectangle instead and warns once. What `mask=auto` uses without a model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toonclip.errors import ConfigError, ToonclipError
from toonclip.stylize.segmodel import OnnxMasker

log = logging.getLogger(__name__)

ENV = "TOONCLIP_SEG_MODEL"  # mask=auto uses this model file when set


class GrabCutMasker:
    """GrabCut seeded by a face box (see the module docstring); no model file needed.

    detector: (H, W, 3) uint8 -> [(x, y, w, h)] boxes, e.g. `FaceDetector`; None: always the
    centred seed. smoother: a `BoxSmoother` for video, so the seed does not jump.
    `no_face` counts the frames that had no face.
    """

    name = "grabcut"
    describe = (
        "GrabCut seeded by the face detector (no segmentation model given: "
        f"mask=FILE.onnx or {ENV}=FILE.onnx)"
    )

    def __init__(
        self,
        detector: Callable | None = None,
        work: int = 128,
        detect: int = 192,
        iters: int = 2,
        smoother=None,
    ):
        self.detector, self.smoother = detector, smoother
        self.work, self.detect, self.iters = work, detect, iters
        self.no_face = 0

    @staticmethod
    def seed(shape, box) -> np.ndarray:
        """(h, w) uint8 GrabCut labels for an image of `shape` and a face box (or None)."""
        import cv2

        h, w = shape[:2]
        labels = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        b = max(2, round(0.02 * min(h, w)))
        labels[:b], labels[-b:], labels[:, :b], labels[:, -b:] = (cv2.GC_BGD,) * 4

        def fill(x0, y0, x1, y1, value):
            x0, x1 = int(np.clip(round(x0), 0, w)), int(np.clip(round(x1), 0, w))
            y0, y1 = int(np.clip(round(y0), 0, h)), int(np.clip(round(y1), 0, h))
            labels[y0:y1, x0:x1] = value

        def ellipse(centre, axes, value):
            centre = tuple(int(round(v)) for v in centre)
            cv2.ellipse(
                labels, centre, tuple(max(1, int(round(v))) for v in axes), 0, 0, 360, value, -1
            )

        if box is None:  # no face: a person standing in the middle, cut by the bottom edge
            fill(0.2 * w, 0.1 * h, 0.8 * w, h, cv2.GC_PR_FGD)
            fill(0.4 * w, 0.35 * h, 0.6 * w, 0.7 * h, cv2.GC_FGD)
            return labels
        x, y, bw, bh = box
        cx = x + bw / 2
        # a head-and-shoulders prior: well above the head and beside it is background
        fill(0, 0, w, y - 0.9 * bh, cv2.GC_BGD)
        fill(0, 0, cx - 1.25 * bw, y + bh, cv2.GC_BGD)
        fill(cx + 1.25 * bw, 0, w, y + bh, cv2.GC_BGD)
        # probable person: head with hair, neck, rounded shoulders, torso down to the bottom edge
        ellipse((cx, y + 0.4 * bh), (0.8 * bw, bh), cv2.GC_PR_FGD)
        fill(cx - 0.35 * bw, y + bh, cx + 0.35 * bw, y + 1.8 * bh, cv2.GC_PR_FGD)
        ellipse((cx, y + 2.3 * bh), (1.5 * bw, 0.9 * bh), cv2.GC_PR_FGD)
        fill(cx - 1.5 * bw, y + 2.3 * bh, cx + 1.5 * bw, h, cv2.GC_PR_FGD)
        fill(x + 0.2 * bw, y + 0.15 * bh, x + 0.8 * bw, y + 0.9 * bh, cv2.GC_FGD)  # face core
        return labels

    @staticmethod
    def _attached(fg: np.ndarray, core: np.ndarray) -> np.ndarray:
        """Only the parts of `fg` connected to the sure-person core: a patch of background whose
        colours resemble the person's is dropped unless it touches them."""
        import cv2

        n, comp = cv2.connectedComponents(fg, connectivity=8)
        keep = np.unique(comp[core & (fg > 0)])
        keep = keep[keep > 0]
        return np.isin(comp, keep) if keep.size else fg > 0

    def _face(self, image: np.ndarray, scale: float):
        """The largest (smoothed) face box, in the coordinates of `image` scaled by `scale`."""
        import cv2

        if self.detector is None:
            return None
        h, w = image.shape[:2]
        f = min(1.0, self.detect / max(h, w))
        small = image
        if f < 1.0:
            small = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        boxes = list(self.detector(np.ascontiguousarray(small)))
        if self.smoother is not None:
            boxes = self.smoother(boxes)
        if not boxes:
            return None
        return tuple(v * scale / f for v in max(boxes, key=lambda b: b[2] * b[3]))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        if min(h, w) < 8:  # GrabCut needs room for a border and a seed
            return np.zeros((h, w), np.float32)
        scale = min(1.0, self.work / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(8, round(w * scale)), max(8, round(h * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        box = self._face(image, scale)
        if box is None:
            self.no_face += 1
            if self.no_face == 1:
                log.warning(
                    "no face found: GrabCut seeded with a centred rectangle (a better mask: "
                    "detector=FILE or mask=FILE.onnx)"
                )
        labels = self.seed(small.shape, box)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        small = np.ascontiguousarray(small)
        # GrabCut's k-means draws from OpenCV's thread RNG: a fixed seed makes the same frame
        # give the same mask, whatever ran before (steadier video, reproducible figures)
        cv2.setRNGSeed(0)
        cv2.grabCut(small, labels, None, bgd, fgd, self.iters, cv2.GC_INIT_WITH_MASK)
        fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = self._attached(fg, labels == cv2.GC_FGD).astype(np.float32)
        if fg.shape != (h, w):
            fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
        return fg


def make_masker(spec="auto", detector: str | None = None, video: bool = False, threads=None):
    """The masker for `mask=auto|grabcut|FILE.onnx`; logs one line saying which it is.

    auto: the model file in $TOONCLIP_SEG_MODEL when set, else GrabCut. detector: the face
    detector file for GrabCut's seed (None: OpenCV's bundled Haar cascade). A masker passed as
    `spec` is returned as it is (the demo shares one between models).
    """
    from toonclip.stylize.faces import BoxSmoother, FaceDetector

    if callable(spec):
        return spec
    spec = str(spec or "auto")
    if spec == "auto" and os.environ.get(ENV):
        masker = OnnxMasker(os.environ[ENV], threads, origin=ENV)
    elif spec in ("auto", "grabcut"):
        try:
            face = FaceDetector(detector)
        except ConfigError:
            raise
        except ToonclipError as exc:  # an OpenCV without a cascade: GrabCut still works unseeded
            log.warning("GrabCut without a face seed: %s", exc)
            face = None
        masker = GrabCutMasker(face, smoother=BoxSmoother() if video and face else None)
    elif spec.lower().endswith(".onnx") or Path(spec).exists():
        masker = OnnxMasker(spec, threads, origin="mask")
    else:
        raise ConfigError(f"mask={spec}: use mask=auto, mask=grabcut or mask=FILE.onnx")
    log.info("person mask: %s", masker.describe)
    return masker
