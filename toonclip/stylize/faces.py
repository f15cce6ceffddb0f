"""`faces=true`: find faces, cartoonise each crop, paste it back with a feathered mask.

The network was trained on tight face crops, so on a group photo or a webcam frame it does best
on each face cut out at training scale. Detection uses OpenCV only, nothing downloaded:

- Haar cascade `haarcascade_frontalface_default.xml`, bundled with opencv-python(-headless) < 5
  (`cv2.data.haarcascades`) and with Debian/Ubuntu's `opencv-data` package;
- or `detector=FILE`: a YuNet `.onnx` (cv2.FaceDetectorYN, also in OpenCV 5) or a cascade `.xml`.

OpenCV 5 wheels ship neither cascades nor CascadeClassifier; then `detector=FILE` is required.
Boxes are (x, y, w, h) ints in pixels; images (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toonclip.errors import ConfigError, ToonclipError

log = logging.getLogger(__name__)

CASCADE = "haarcascade_frontalface_default.xml"
SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


def find_cascade() -> Path | None:
    """The bundled frontal-face Haar cascade, or None when this OpenCV has none."""
    import cv2

    dirs = [getattr(getattr(cv2, "data", None), "haarcascades", ""), *SYSTEM_CASCADE_DIRS]
    for folder in dirs:
        if folder and (Path(folder) / CASCADE).is_file():
            return Path(folder) / CASCADE
    return None


class FaceDetector:
    """Callable: (H, W, 3) uint8 RGB -> list of (x, y, w, h) face boxes, largest first."""

    def __init__(self, path: str | Path | None = None, min_frac: float = 0.08):
        import cv2

        self.min_frac = min_frac
        path = Path(path) if path else None
        if path is not None and not path.is_file():
            raise ConfigError(f"detector={path} does not exist; pass a YuNet .onnx or cascade .xml")
        if path is not None and path.suffix.lower() == ".onnx":
            self.kind, self.net = "yunet", cv2.FaceDetectorYN.create(str(path), "", (320, 320))
            return
        cascade = path or find_cascade()
        if cascade is None or not hasattr(cv2, "CascadeClassifier"):
            raise ToonclipError(
                f"faces=true needs a face detector and OpenCV {cv2.__version__} bundles none "
                "(OpenCV 5 dropped the Haar cascades): pip install 'opencv-python-headless<5', "
                "or pass detector=FILE (a YuNet face_detection_yunet_*.onnx or a cascade .xml)"
            )
        self.kind, self.net = "haar", cv2.CascadeClassifier(str(cascade))
        if self.net.empty():
            raise ConfigError(f"detector={cascade} is not a readable Haar cascade")

    def __call__(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        import cv2

        h, w = image.shape[:2]
        min_side = max(16, int(self.min_frac * min(h, w)))
        if self.kind == "yunet":
            self.net.setInputSize((w, h))
            _, found = self.net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            boxes = [] if found is None else [tuple(int(v) for v in f[:4]) for f in found]
            boxes = [b for b in boxes if min(b[2], b[3]) >= min_side]
        else:
            gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            found = self.net.detectMultiScale(gray, 1.1, 5, minSize=(min_side, min_side))
            boxes = [tuple(int(v) for v in b) for b in found]
        return sorted(boxes, key=lambda b: -b[2] * b[3])


def square_crop(box, margin: float, shape) -> tuple[int, int, int, int]:
    """Grow a face box by `margin` (fraction of its side) into a square, clipped to the image.

    Returns (x0, y0, x1, y1). The extra room takes in hair and chin, as in the training crops.
    """
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    half = max(w, h) * (1 + 2 * margin) / 2
    x0, y0 = int(round(max(0, cx - half))), int(round(max(0, cy - half)))
    x1, y1 = int(round(min(shape[1], cx + half))), int(round(min(shape[0], cy + half)))
    return x0, y0, x1, y1


def feather_mask(h: int, w: int, feather: float = 0.25) -> np.ndarray:
    """(h, w) float32 in [0, 1]: 1 inside an ellipse filling the box, easing to 0 at its rim.

    `feather` is the width of the soft edge as a fraction of the radius (smoothstep profile),
    so no seam shows between the cartoon face and the untouched photo around it.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2)
    t = np.clip((1.0 - r) / max(feather, 1e-3), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class BoxSmoother:
    """Temporal smoothing of face boxes across video frames, so heads do not jump.

    Each track keeps an exponential moving average of (centre x, centre y, side); a detection
    joins the track whose box overlaps it most (IoU >= `min_iou`). A track survives `patience`
    frames without a detection (Haar misses the odd frame) before it is dropped.
    """

    def __init__(self, alpha: float = 0.35, min_iou: float = 0.2, patience: int = 5):
        self.alpha, self.min_iou, self.patience = alpha, min_iou, patience
        self.tracks: list[dict] = []  # {"state": np.array([cx, cy, side]), "missing": int}

    @staticmethod
    def _box(state):
        cx, cy, s = state
        return (cx - s / 2, cy - s / 2, s, s)

    @staticmethod
    def iou(a, b) -> float:
        ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
        iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
        ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
        inter = iw * ih
        union = a[2] * a[3] + b[2] * b[3] - inter
        return inter / union if union > 0 else 0.0

    def __call__(self, boxes) -> list[tuple[int, int, int, int]]:
        free = list(range(len(self.tracks)))
        for box in boxes:
            x, y, w, h = box
            state = np.array([x + w / 2, y + h / 2, max(w, h)], np.float64)
            scores = [(self.iou(self._box(self.tracks[i]["state"]), box), i) for i in free]
            best = max(scores, default=(0.0, -1))
            if best[0] >= self.min_iou:
                track = self.tracks[best[1]]
                track["state"] += self.alpha * (state - track["state"])
                track["missing"] = 0
                free.remove(best[1])
            else:
                self.tracks.append({"state": state, "missing": 0})
        for i in free:
            self.tracks[i]["missing"] += 1
        self.tracks = [t for t in self.tracks if t["missing"] <= self.patience]
        return [tuple(int(round(v)) for v in self._box(t["state"])) for t in self.tracks]


class FaceStylizer:
    """Callable (H, W, 3) uint8 -> (H, W, 3) uint8: each detected face cartoonised in place.

    stylize: the crop stylizer ((h, w, 3) uint8 -> same), e.g. `toonclip.inference.Stylizer`.
    detector: boxes for an image. smoother: a BoxSmoother for video (None for still images).
    Images without a face come back unchanged (and `last_count` says 0).
    """

    def __init__(
        self,
        stylize: Callable,
        detector: Callable,
        margin: float = 0.4,
        feather: float = 0.25,
        strength: float = 1.0,
        smoother: BoxSmoother | None = None,
    ):
        self.stylize, self.detector, self.smoother = stylize, detector, smoother
        self.margin, self.feather, self.strength = margin, feather, float(strength)
        self.last_count = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        boxes = self.detector(image)
        if self.smoother is not None:
            boxes = self.smoother(boxes)
        self.last_count = len(boxes)
        out = image.astype(np.float32)
        for box in boxes:
            x0, y0, x1, y1 = square_crop(box, self.margin, image.shape)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            toon = self.stylize(crop).astype(np.float32)
            mask = feather_mask(y1 - y0, x1 - x0, self.feather)[..., None] * self.strength
            out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - mask) + toon * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blend(photo: np.ndarray, cartoon: np.ndarray, strength: float) -> np.ndarray:
    """photo * (1 - strength) + cartoon * strength, uint8 (strength clipped to [0, 1])."""
    s = float(np.clip(strength, 0.0, 1.0))
    if s >= 1.0:
        return cartoon
    mixed = photo.astype(np.float32) * (1 - s) + cartoon.astype(np.float32) * s
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
