"""fp16 and int8 versions of an exported fp32 ONNX graph, and the faces that calibrate them.

- fp16: every float weight and activation in half precision (onnxruntime's float16 converter),
  graph inputs/outputs kept float32 so callers do not change. Halves the file.
- int8: static QDQ quantisation (QuantizeLinear/DequantizeLinear pairs around each op): int8
  per-channel weights, uint8 activations whose ranges come from running the fp32 graph on real
  faces (`calib=DIR`). Integer quantisation needs that representative data: ranges from random
  noise clip the colours that faces actually produce.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toonclip.errors import DataError

log = logging.getLogger(__name__)


def load_faces(folder: str | Path, size: int, limit: int = 16) -> torch.Tensor:
    """Up to `limit` images from `folder`, centre-cropped square and resized: (N, 3, size, size).

    Values are float RGB in [0, 1]. Files sorted by name, so a run is reproducible.
    """
    from toonclip.data.io import center_square, is_image_file, load_rgb

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"calib={folder} is not a folder; pass a folder of face images")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))[: max(1, int(limit))]
    if not files:
        raise DataError(f"calib={folder} has no images (.jpg, .png, ...); pass a folder of faces")
    return faces_tensor([center_square(load_rgb(p)) for p in files], size)


def faces_tensor(faces: list[np.ndarray], size: int) -> torch.Tensor:
    """(H, W, 3) uint8 square faces resized to (N, 3, size, size) float RGB in [0, 1]."""
    from toonclip.data.io import resize

    arrays = [resize(face, size) for face in faces]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)


def synthetic_faces(size: int, n: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields with a skin-toned ellipse: a stand-in when no faces are given.

    (N, 3, size, size) float in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    face = ((xx / 0.55) ** 2 + (yy / 0.75) ** 2 < 1).float()
    skin = torch.tensor([0.87, 0.67, 0.55]).view(1, 3, 1, 1)
    return x * (1 - face) + skin * face


def to_fp16(src: str | Path, dst: str | Path) -> Path:
    """Convert an fp32 ONNX file to fp16 weights/activations with float32 graph I/O."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _copy_meta(model, precision="fp16")
    onnx.save(model, str(dst))
    return Path(dst)


def to_int8(src: str | Path, dst: str | Path, faces: torch.Tensor, baked: bool = False) -> Path:
    """Static QDQ int8 quantisation of an fp32 ONNX file, calibrated on `faces`.

    faces: (N, 3, S, S) float in [0, 1] at the graph's input size (converted to uint8 NHWC when
    the graph is baked).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    if baked:
        feeds = [(f * 255 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy() for f in faces]
    else:
        feeds = [f.numpy() for f in faces.split(1)]
    feeds = [np.ascontiguousarray(f.reshape((1, *f.shape[-3:]))) for f in feeds]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {input_name: item}

    with tempfile.TemporaryDirectory() as tmp, _quiet_axis_warnings():
        pre = Path(tmp) / "pre.onnx"
        # shape inference + graph fusions first, as onnxruntime recommends for static quantisation
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            # all supported ops: measured faster than Conv-only (fewer QDQ round trips between
            # neighbouring quantised ops) at the same PSNR
        )
    model = onnx.load(str(dst))
    _copy_meta(model, precision="int8", source=onnx.load(str(src), load_external_data=False))
    onnx.save(model, str(dst))
    return Path(dst)


class _AxisWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _quiet_axis_warnings():
    """per_channel=True asks for axis-1 scales on every weight; on 1-D ones (biases, the
    squeeze-excite vectors of MobileNetV3) ORT falls back to per-tensor and logs a root-logger
    warning per tensor, dozens per export, none of them actionable."""
    flt = _AxisWarnings()
    logging.getLogger().addFilter(flt)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(flt)


def _copy_meta(model, precision: str, source=None) -> None:
    from toonclip.export.onnx import set_metadata
    from toonclip.export.runtime import META_PREFIX

    n = len(META_PREFIX)
    props = {
        p.key[n:]: p.value for p in (source or model).metadata_props if p.key[:n] == META_PREFIX
    }
    set_metadata(model, {**props, "precision": precision})
