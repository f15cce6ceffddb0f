"""PyTorch generator -> CoreML ML program (.mlpackage) with image input and output.

The app hands a CVPixelBuffer / CGImage of `size` x `size` RGB pixels and gets one back: the
input ImageType scales 0-255 pixels by 1/255 into the generator's [0, 1] range, and the wrapper
below maps the output back to 0-255 for the output ImageType. Weights and compute are fp16 (the
ML program default, what the Neural Engine runs). Prediction needs macOS; elsewhere the saved
spec is validated instead.
"""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toonclip.errors import ConfigError, ToonclipError

log = logging.getLogger(__name__)


class ImageIO(nn.Module):
    """forward(image): (1, 3, H, W) float in [0, 1] -> (1, 3, H, W) float in [0, 255]."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.generator(image).clamp(0.0, 1.0) * 255.0


def export_coreml(generator: nn.Module, path: str | Path, size: int, precision: str = "fp16"):
    """Convert to an iOS 16+ ML program at `path` (.mlpackage); returns the saved path."""
    try:
        import coremltools as ct
    except ModuleNotFoundError as exc:
        raise ToonclipError("format=coreml needs coremltools: pip install -e '.[export]'") from exc
    if precision not in ("fp16", "fp32"):
        raise ConfigError(f"precision={precision}: CoreML export supports fp16 or fp32")
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ConfigError(f"out={path}: a CoreML ML program is a folder ending in .mlpackage")
    module = ImageIO(generator).eval()
    example = torch.rand(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # torch.export is coremltools' current PyTorch path (TorchScript tracing is deprecated)
        program = torch.export.export(module, (example,)).run_decompositions({})
        mlmodel = ct.convert(
            program,
            inputs=[
                ct.ImageType(
                    name="image",
                    shape=example.shape,
                    scale=1 / 255.0,
                    color_layout=ct.colorlayout.RGB,
                )
            ],
            outputs=[ct.ImageType(name="cartoon", color_layout=ct.colorlayout.RGB)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=(
                ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
            ),
        )
    mlmodel.short_description = "toonclip face -> cartoon"
    mlmodel.user_defined_metadata["toonclip.size"] = str(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(path))
    return path


def validate_coreml(path: str | Path, size: int) -> dict:
    """Check the saved spec: ML program, RGB image in/out of `size`, weights' float type.

    Returns a summary dict. Raises ToonclipError when the spec is not what an app expects.
    """
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise ToonclipError(f"{path}: expected an ML program, got {spec.WhichOneof('Type')}")
    summary = {"type": "mlProgram", "spec_version": spec.specificationVersion}
    for role, feats in (("input", spec.description.input), ("output", spec.description.output)):
        feat = feats[0]
        kind = feat.type.WhichOneof("Type")
        img = feat.type.imageType
        rgb = ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
        if kind != "imageType" or img.colorSpace != rgb:
            raise ToonclipError(f"{path}: {role} '{feat.name}' is {kind}, expected an RGB image")
        if (img.width, img.height) != (size, size):
            raise ToonclipError(f"{path}: {role} is {img.width}x{img.height}, expected {size}")
        summary[role] = f"{feat.name}: RGB image {img.width}x{img.height}"
    summary["weights"] = _weight_dtypes(spec)
    return summary


def _weight_dtypes(spec) -> str:
    """The float types of the program's const tensors (the weights), e.g. 'fp16'."""
    names = {10: "fp16", 11: "fp32"}  # MIL DataType enum: FLOAT16=10, FLOAT32=11
    seen = set()
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type != "const":
                    continue
                for out in op.outputs:
                    dtype = out.type.tensorType.dataType
                    if (
                        dtype in names
                        and np.prod(
                            [d.constant.size for d in out.type.tensorType.dimensions] or [1]
                        )
                        > 16
                    ):
                        seen.add(names[dtype])
    return ",".join(sorted(seen)) or "unknown"


def predict_check(path: str | Path, generator: nn.Module, faces: torch.Tensor) -> str:
    """On macOS run the model and compare with PyTorch; elsewhere say why it cannot run."""
    if platform.system() != "Darwin":
        return "CoreML prediction needs macOS: spec validated only (not run) on this machine"
    import coremltools as ct
    from PIL import Image

    from toonclip.export.onnx import psnr

    model = ct.models.MLModel(str(path))
    worst = float("inf")
    for x in faces.split(1):
        pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        out = np.asarray(model.predict({"image": pil})["cartoon"].convert("RGB"), np.float32) / 255
        with torch.no_grad():
            ref = generator(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        worst = min(worst, psnr(out, ref))
    return f"CoreML vs PyTorch on {len(faces)} faces: worst PSNR {worst:.1f} dB"
