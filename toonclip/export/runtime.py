"""Running any model file the same way: a checkpoint (PyTorch), an ONNX file or a TFLite file.

Every runtime is wrapped as a torch `nn.Module` with the generator's contract, so that
`toonclip.inference.Stylizer` does the pre/post-processing (resize or pad, clamp, uint8) for all of
them and the numbers in `bench` and the pictures from `stylize` come from one code path:

    forward(x): x (N, 3, H, W) float32 RGB in [0, 1] -> (N, 3, H, W) float32, nominally [0, 1]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toonclip.errors import DataError, ToonclipError

META_PREFIX = "toonclip."  # ONNX metadata_props keys written by the exporter


@dataclasses.dataclass
class LoadedModel:
    """A runnable model and what we know about it."""

    generator: nn.Module  # generator contract above
    size: int  # training size (the `resize` policy's working size)
    fmt: str  # torch | onnx | tflite
    precision: str  # fp32 | fp16 | int8
    path: Path
    fixed_size: int | None = None  # set when the graph only accepts size x size

    @property
    def name(self) -> str:
        return self.path.name


def ort_session(path: str | Path, threads: int | None = None, spin: bool = False):
    """An ONNX Runtime CPU session; `threads` caps intra-op threads (None: runtime default).

    spin: let idle worker threads busy-wait for the next run. Fastest for back-to-back runs
    (bench), but the spinning threads starve PyTorch when both run in one process, so off unless
    asked for.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # QDQ graphs log one warning per node otherwise
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a loadable ONNX model: {first[:200]}") from exc


def onnx_metadata(session) -> dict[str, str]:
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}


class OnnxGenerator(nn.Module):
    """An ONNX Runtime session behind the generator contract.

    Handles both graphs `toonclip export` writes: float NCHW in [0, 1] (`bake=false`) and uint8
    NHWC RGB (`bake=true`, pre/post-processing inside the graph).
    """

    def __init__(self, session, baked: bool):
        super().__init__()
        self.session, self.baked = session, baked
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:  # exported graphs have batch 1: run a batch image by image
            return torch.cat([self(one) for one in x.split(1)])
        arr = x.detach().cpu().float().numpy()
        if self.baked:
            nhwc = np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
            y = self.session.run(None, {self.input_name: np.ascontiguousarray(nhwc)})[0]
            return torch.from_numpy(y.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        y = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(np.asarray(y, dtype=np.float32))

    def prepare(self, x: torch.Tensor):
        """A zero-argument call running the session on `x` (1, 3, H, W), feed converted once.

        `bench` times this, so the figures are the runtime's, not numpy conversions'.
        """
        arr = x.detach().cpu().float().numpy()
        if self.baked:
            arr = np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        feed = {self.input_name: np.ascontiguousarray(arr)}
        return lambda: self.session.run(None, feed)


class TfliteGenerator(nn.Module):
    """A LiteRT interpreter (ai-edge-litert) behind the generator contract; float NCHW I/O."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads or None)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            return torch.cat([self(one) for one in x.split(1)])
        arr = x.detach().cpu().float().numpy()
        scale, zero = self.inp["quantization"]
        if scale:  # int8 graph: quantise with the scale/zero-point the converter chose
            info = np.iinfo(self.inp["dtype"])
            arr = np.clip(np.round(arr / scale + zero), info.min, info.max)
        self.interp.set_tensor(self.inp["index"], arr.astype(self.inp["dtype"]))
        self.interp.invoke()
        y = np.array(self.interp.get_tensor(self.out["index"]), np.float32)
        scale, zero = self.out["quantization"]
        return torch.from_numpy((y - zero) * scale if scale else y)

    def prepare(self, x: torch.Tensor):
        """A zero-argument call that runs the interpreter on `x` (tensor set once)."""
        self(x)  # sets the input tensor (quantised if needed)
        return self.interp.invoke


def _static_hw(shape, baked: bool) -> int | None:
    h, w = (shape[1], shape[2]) if baked else (shape[2], shape[3])
    return int(h) if isinstance(h, int) and h == w else None


def load_model(path: str | Path, threads: int | None = None, spin: bool = False) -> LoadedModel:
    """Load a checkpoint / run folder, an `.onnx` or a `.tflite` file for inference on the CPU.

    threads: CPU threads for the runtime; spin: see `ort_session`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"model {path} does not exist; pass a checkpoint, run folder or .onnx file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        session = ort_session(path, threads, spin)
        meta = onnx_metadata(session)
        baked = meta.get("bake") == "true" or session.get_inputs()[0].type == "tensor(uint8)"
        fixed = _static_hw(session.get_inputs()[0].shape, baked)
        size = int(meta.get("size", fixed or 256))
        gen = OnnxGenerator(session, baked)
        return LoadedModel(gen, size, "onnx", meta.get("precision", "fp32"), path, fixed)
    if suffix == ".tflite":
        try:
            gen = TfliteGenerator(path, threads)
        except ImportError as exc:
            raise ToonclipError(
                f"{path}: running .tflite files needs ai-edge-litert: pip install ai-edge-litert"
            ) from exc
        shape = [int(v) for v in gen.inp["shape"]]
        meta = _tflite_sidecar(path)
        return LoadedModel(
            gen,
            int(meta.get("size", shape[2])),
            "tflite",
            meta.get("precision", "fp32"),
            path,
            shape[2] if shape[2] == shape[3] else None,
        )
    if suffix in (".mlpackage", ".mlmodel"):
        raise DataError(f"{path}: CoreML models run only on macOS/iOS; use an .onnx or checkpoint")
    from toonclip.inference import load_checkpoint, nhwc, resolve_checkpoint

    if threads:
        torch.set_num_threads(int(threads))
    generator, cfg = load_checkpoint(resolve_checkpoint(path))
    return LoadedModel(nhwc(generator), int(cfg.data.size), "torch", "fp32", path)


def _tflite_sidecar(path: Path) -> dict:
    # TFLite has no free-form metadata we can write without extra packages: a JSON sidecar.
    side = path.with_suffix(".json")
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}


def make_stylizer(model: LoadedModel, mode: str = "resize", size: int | None = None):
    """A `toonclip.inference.Stylizer` for any loaded model: (H, W, 3) uint8 -> same shape."""
    from toonclip.inference import Stylizer

    size = int(size or model.size)
    if model.fixed_size is not None:
        if mode == "native":
            raise ToonclipError(
                f"{model.path} has a fixed {model.fixed_size}px input: mode=native needs a model "
                "exported with dynamic=true; use mode=resize"
            )
        size = model.fixed_size
    return Stylizer(model.generator, size, mode=mode)
