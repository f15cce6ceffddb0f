"""PyTorch generator -> ONNX, plus the parity check against PyTorch.

Exporter choice (torch 2.14): the torch.export-based exporter (`dynamo=True`) is the supported one,
but it only implements opset >= 18 and its down-conversion to 17 fails on this network (Reduce*
`axes` moved from attribute to input). So opset >= 18 uses it; opset 14-17 (for older runtimes)
uses the deprecated TorchScript exporter, which still works. Both emit native HardSwish and
HardSigmoid (opset >= 14), which is why 14 is the floor.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toonclip.errors import ConfigError, ToonclipError
from toonclip.export.runtime import META_PREFIX

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "image", "cartoon"
DEFAULT_OPSET, MIN_OPSET, MAX_SIDE = 18, 14, 4096


class BakedIO(nn.Module):
    """Pre/post-processing inside the graph, so an app feeds camera pixels straight in.

    forward(image): (N, H, W, 3) uint8 RGB -> (N, H, W, 3) uint8 RGB cartoon.
    H and W must be multiples of 32 (the encoder's stride), or equal the export size.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0
        y = self.generator(x).clamp(0.0, 1.0) * 255.0
        # round-half-up then cast: ONNX Cast truncates, so +0.5 makes it match Stylizer's round()
        return (y + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1)


class FloatIO(nn.Module):
    """The generator with its documented contract and a stable argument name for dynamic shapes.

    forward(image): (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W) float, nominally [0, 1].
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.generator(image)


def check_opset(opset: int) -> int:
    opset = int(opset)
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: HardSwish/HardSigmoid need opset >= {MIN_OPSET}")
    return opset


def export_onnx(
    generator: nn.Module,
    path: str | Path,
    size: int,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    bake: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `generator` as an ONNX graph with input `image` and output `cartoon`.

    size: the example input side (and the fixed side when `dynamic` is false), multiple of 32.
    dynamic: height and width become symbolic (`height`, `width`), still multiples of 32.
    bake: uint8 NHWC in/out (see BakedIO) instead of float NCHW in [0, 1].
    """
    import onnx

    opset, path = check_opset(opset), Path(path)
    if size % 32:
        raise ConfigError(f"size={size}: must be a multiple of 32 (the encoder's stride)")
    module = (BakedIO(generator) if bake else FloatIO(generator)).eval()
    example = (
        torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
        if bake
        else torch.rand(1, 3, size, size)
    )
    hw = (1, 2) if bake else (2, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter deprecation/trace chatter; errors still raise
        if opset >= 18:
            shapes = None
            if dynamic:
                dims = [torch.export.Dim(n, min=32, max=MAX_SIDE) for n in ("height", "width")]
                shapes = {"image": {hw[0]: dims[0], hw[1]: dims[1]}}
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=shapes,
                external_data=False,  # one self-contained file (weights are far below 2 GB)
                verbose=False,
            )
        else:
            axes = {hw[0]: "height", hw[1]: "width"}
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
            )
    model = onnx.load(str(path))
    meta = {"size": str(size), "bake": str(bool(bake)).lower(), "precision": "fp32"}
    meta.update(metadata or {})
    set_metadata(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def set_metadata(model, meta: dict[str, str]) -> None:
    """Write `toonclip.*` metadata_props (replacing old values) on an onnx.ModelProto."""
    keep = [p for p in model.metadata_props if p.key[len(META_PREFIX) :] not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = META_PREFIX + key, str(value)


def op_types(path: str | Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@torch.no_grad()
def parity(generator: nn.Module, onnx_path: str | Path, batch: torch.Tensor) -> float:
    """Max |PyTorch - ONNX Runtime| over `batch` ((N, 3, S, S) float in [0, 1]).

    Float graphs are compared on raw outputs. Baked graphs see the batch as uint8 and return
    uint8, so the reference gets the same input quantisation and output rounding: their error is
    then 0 or 1/255 (one grey level, where a value sits on a rounding boundary).
    """
    from toonclip.export.runtime import load_model

    loaded = load_model(onnx_path)
    baked = getattr(loaded.generator, "baked", False)
    worst = 0.0
    for x in batch.split(1):
        if baked:
            x = (x * 255 + 0.5).floor().clamp(0, 255) / 255
        ref = generator(x)
        if baked:
            ref = (ref.clamp(0, 1) * 255 + 0.5).floor() / 255
        worst = max(worst, float((ref - loaded.generator(x)).abs().max()))
    return worst


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB between two images or batches in [0, 1] (clamped first); inf when identical."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float32)).clamp(0, 1)
    b = torch.as_tensor(np.asarray(b, dtype=np.float32)).clamp(0, 1)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ToonclipError(
            f"format=onnx needs the package '{exc.name}': pip install -e '.[export]'"
        ) from exc
