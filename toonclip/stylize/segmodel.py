"""`mask=FILE.onnx`: a person segmentation network, run by ONNX Runtime on the CPU.

What a file must look like (anything else is refused when it is loaded, in one line):

- Input: the graph's first input, float32 RGB, NCHW (1, 3, H, W) or NHWC (1, H, W, 3). A fixed
  H x W gets the frame resized to it; a dynamic one gets the frame scaled to `side` px (384) on
  its long side, each side rounded to a multiple of 32, so that people come at the scale such
  networks are trained on whatever the frame size.
- Scaling of the input: `imagenet` ([0, 1] then (x - mean) / std, what torchvision's DeepLabV3
  expects: the default for NCHW graphs), `unit` ([0, 1], MediaPipe selfie segmentation: the
  default for NHWC graphs) or `signed` ([-1, 1]). A metadata property `toonclip.normalize` in
  the .onnx file overrides the default.
- Output: the graph's first output, at any resolution (it is resized to the frame). Either one
  channel, (1, 1, h, w), (1, h, w, 1), (1, h, w) or (h, w): a person probability (all values in
  [0, 1]) or a logit (a sigmoid is applied once any value falls outside [0, 1]); or class scores
  (1, C, h, w) or (1, h, w, C), C >= 2, logits (softmaxed over C) or probabilities (already
  summing to 1 over C), of which the person class is kept:
  15 when C = 21 (Pascal VOC: torchvision's DeepLabV3, FCN, LR-ASPP), 1 when C = 2
  (background, person), else the metadata property `toonclip.person` must give the index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toonclip.errors import ConfigError, DataError

MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
NORMALIZE = ("imagenet", "unit", "signed")
VOC_PERSON = 15


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


class OnnxMasker:
    """A segmentation `.onnx` as a masker (accepted inputs and outputs: the module docstring).

    origin: how the file was named (`mask=FILE`, or the environment variable), for messages.
    """

    def __init__(self, path: str | Path, threads: int | None = None, origin: str = "mask"):
        from toonclip.export.runtime import onnx_metadata, ort_session

        self.path, self.origin, self.side = Path(path), origin, 384
        where = f"{origin}={self.path}"
        if not self.path.is_file():
            raise ConfigError(
                f"{where} does not exist; pass a segmentation .onnx (README: Person and "
                "background) or mask=grabcut"
            )
        self.session = ort_session(self.path, threads)
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if inp.type != "tensor(float)" or len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise ConfigError(
                f"{where}: input {inp.name} is {inp.type} {shape}; a mask model needs float32 "
                "RGB, (1, 3, H, W) or (1, H, W, 3)"
            )
        self.input_name, self.nhwc = inp.name, shape[3] == 3 and shape[1] != 3
        hw = shape[1:3] if self.nhwc else shape[2:4]
        self.fixed = tuple(hw) if all(isinstance(v, int) and v > 0 for v in hw) else None
        meta = onnx_metadata(self.session)
        self.normalize = meta.get("normalize", "unit" if self.nhwc else "imagenet")
        if self.normalize not in NORMALIZE:
            raise ConfigError(
                f"{where}: metadata toonclip.normalize={self.normalize}; use {', '.join(NORMALIZE)}"
            )
        self.person = int(meta["person"]) if "person" in meta else None
        self.logits = False  # latched: once a logit is seen, every frame gets the sigmoid
        self._probe(where)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def describe(self) -> str:
        where = "mask=FILE" if self.origin == "mask" else f"${self.origin}"
        return f"segmentation model {self.path} (from {where})"

    def _probe(self, where: str) -> None:
        """Run once on a grey frame so a file with an unusable output fails now, in one line."""
        out = self.session.run(None, {self.input_name: self._feed(np.full((64, 64, 3), 128))})[0]
        shape = tuple(np.shape(out))
        try:
            self._channels(np.asarray(out, np.float32))
        except ValueError as exc:
            raise ConfigError(
                f"{where}: output {self.session.get_outputs()[0].name} has shape {shape}: {exc}"
            ) from exc

    def _work_size(self, h: int, w: int) -> tuple[int, int]:
        if self.fixed is not None:
            return self.fixed
        scale = self.side / max(h, w)
        return max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)

    def _feed(self, image: np.ndarray) -> np.ndarray:
        import cv2

        th, tw = self._work_size(*image.shape[:2])
        x = cv2.resize(image.astype(np.uint8), (tw, th), interpolation=cv2.INTER_AREA)
        x = x.astype(np.float32) / 255.0
        if self.normalize == "imagenet":
            x = (x - MEAN) / STD
        elif self.normalize == "signed":
            x = x * 2.0 - 1.0
        x = x[None] if self.nhwc else x.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, np.float32)

    def _channels(self, out: np.ndarray) -> np.ndarray:
        """The raw output -> (h, w) person probability; ValueError says why a shape is unusable."""
        if out.ndim == 4 and out.shape[0] == 1:
            a, b, c = out.shape[1:]
            if a <= 64 and a < min(b, c):  # (1, C, h, w)
                maps = out[0]
            elif c <= 64 and c < min(a, b):  # (1, h, w, C)
                maps = out[0].transpose(2, 0, 1)
            else:
                raise ValueError("no channel axis of (1, C, h, w) or (1, h, w, C)")
        elif out.ndim == 3 and out.shape[0] == 1:
            maps = out
        elif out.ndim == 2:
            maps = out[None]
        else:
            raise ValueError(
                "expected (1, 1, h, w), (1, C, h, w), (1, h, w, C), (1, h, w) or (h, w)"
            )
        if min(maps.shape[1:]) < 8:
            raise ValueError("not a segmentation map (h and w must be 8 px or more)")
        if maps.shape[0] == 1:
            if out.min() < -1e-3 or out.max() > 1 + 1e-3:
                self.logits = True
            return _sigmoid(maps[0]) if self.logits else np.clip(maps[0], 0.0, 1.0)
        person = self.person
        if person is None:
            person = {21: VOC_PERSON, 2: 1}.get(maps.shape[0])
        if person is None or not 0 <= person < maps.shape[0]:
            raise ValueError(
                f"{maps.shape[0]} classes and no person class: set the model's metadata "
                "toonclip.person to its index (README: Person and background)"
            )
        if maps.min() >= 0 and np.abs(maps.sum(0) - 1).max() < 1e-3:  # already a softmax
            return maps[person]
        e = np.exp(maps - maps.max(0, keepdims=True))
        return e[person] / e.sum(0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        out = self.session.run(None, {self.input_name: self._feed(image)})[0]
        try:
            prob = self._channels(np.asarray(out, np.float32)).astype(np.float32)
        except ValueError as exc:  # a frame of another aspect ratio than the probe's
            shape = np.shape(out)
            raise DataError(
                f"{self.origin}={self.path}: output shape {shape} for a {w}x{h} frame: {exc}"
            ) from exc
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
