"""PyTorch generator -> TFLite (LiteRT) through litert-torch, an optional extra.

    pip install -e '.[tflite]'     # litert-torch + ai-edge-litert (checked with torch 2.14.1)

fp32 is litert-torch's direct conversion (float NCHW input in [0, 1], like the PyTorch module).
fp16 casts the weights to half with ai-edge-quantizer (compute stays float: the GPU delegate runs
fp16 anyway). int8 is ai-edge-quantizer's static recipe (int8 weights and activations) calibrated
on real faces; its input and output tensors are int8 with the scale/zero-point the interpreter
reports, which `runtime.TfliteGenerator` applies. Parity and latency use ai-edge-litert's
interpreter, the runtime an Android app ships.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from toonclip.errors import ConfigError, ToonclipError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "format=tflite needs litert-torch and ai-edge-litert (optional, heavy): "
    "pip install -e '.[tflite]' (or pip install litert-torch ai-edge-litert)"
)


def require_litert() -> None:
    """Raise one clear ToonclipError when the optional LiteRT packages are missing or broken."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        import litert_torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ToonclipError(f"{INSTALL_HINT}; missing module '{exc.name}'") from exc
    except Exception as exc:  # noqa: BLE001 - a version clash with our torch surfaces here
        msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ToonclipError(f"litert-torch failed to import with this torch: {msg}") from exc


def export_tflite(
    generator: nn.Module,
    path: str | Path,
    size: int,
    precision: str = "fp32",
    faces: torch.Tensor | None = None,
) -> Path:
    """Write a .tflite of the generator at a fixed `size`; int8 needs `faces` (N, 3, S, S) in [0,1].

    A JSON sidecar (same stem) records size and precision for `bench` and `stylize`.
    """
    require_litert()
    import litert_torch

    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"precision={precision}: use fp32, fp16 or int8")
    if precision == "int8" and faces is None:
        raise ConfigError("precision=int8 needs calib=DIR: a folder of real face images")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(generator.eval(), (example,))
    if precision == "fp32":
        edge.export(str(path))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.tflite"
            edge.export(str(fp32))
            _quantize(fp32, path, precision, faces)
    path.with_suffix(".json").write_text(json.dumps({"size": size, "precision": precision}))
    return path


def _quantize(src: Path, dst: Path, precision: str, faces: torch.Tensor | None) -> None:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe, recipe_manager

    if precision == "fp16":
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
        )
        result = quantizer.Quantizer(str(src), manager.get_quantization_recipe()).quantize()
    else:
        q = quantizer.Quantizer(str(src), recipe.static_wi8_ai8())
        signature, io = next(iter(Interpreter(model_path=str(src)).get_signature_list().items()))
        samples = [{io["inputs"][0]: x.numpy()} for x in faces.split(1)]
        result = q.quantize(q.calibrate({signature: samples}, num_threads=2))
    result.export_model(str(dst), overwrite=True)
