"""`toonclip export`: ONNX round trips and parity, fp16/int8, CoreML spec, TFLite, bad input.

A small but real network (UNet + timm MobileNetV3-small, with HardSwish) at 64 px keeps every
export to a few seconds; the checkpoint is written in the documented Lightning layout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL

from toonclip.cli import main

ARCH, ENCODER, SIZE = SMALL


@pytest.fixture(scope="module")
def ckpt(small_checkpoint) -> Path:
    return small_checkpoint


@pytest.fixture(scope="module")
def faces_dir(synthetic_root) -> Path:
    return synthetic_root / "ffhq"


@pytest.fixture(scope="module")
def generator(ckpt):
    from toonclip.inference import load_checkpoint

    return load_checkpoint(ckpt)[0]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def only_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def fp32_dynamic(ckpt, faces_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    code = main(["export", f"ckpt={ckpt}", f"out={out}", "dynamic=true", f"calib={faces_dir}"])
    assert code == 0
    return out


def test_onnx_graph_has_named_io_native_hardswish_and_dynamic_hw(fp32_dynamic):
    import onnx

    model = onnx.load(str(fp32_dynamic))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["cartoon"]
    ops = {n.op_type for n in model.graph.node}
    assert {"HardSwish", "HardSigmoid"} <= ops
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 14
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]
    assert list(fp32_dynamic.parent.iterdir()) == [fp32_dynamic]  # no external .data file
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["toonclip.size"] == str(SIZE) and meta["toonclip.precision"] == "fp32"


@pytest.mark.parametrize("hw", [(64, 64), (96, 160)])
def test_onnx_matches_pytorch_at_any_multiple_of_32(fp32_dynamic, generator, hw):
    from toonclip.export.runtime import load_model

    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        ref = generator(x)
    got = load_model(fp32_dynamic).generator(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-3


def test_export_prints_parity_and_fails_above_tolerance(ckpt, tmp_path, capsys):
    code, out, _ = run(capsys, f"ckpt={ckpt}", f"out={tmp_path / 'a.onnx'}", "opset=17")
    assert code == 0
    assert "max |diff|" in out and "HardSwish" in out  # legacy exporter path, opset 17
    code, _, err = run(
        capsys, f"ckpt={ckpt}", f"out={tmp_path / 'b.onnx'}", "atol=1e-12", "opset=17"
    )
    assert code == 2 and "parity failed" in only_error(err)


def test_a_baked_export_is_held_to_one_grey_level(ckpt, tmp_path, capsys):
    # uint8 output: a value on a rounding boundary may round either way (1/255 apart), so a
    # float tolerance below that would refuse a correct export (it did, on an Intel CPU).
    code, out, _ = run(
        capsys, f"ckpt={ckpt}", f"out={tmp_path / 'b.onnx'}", "bake=true", "atol=1e-12", "opset=17"
    )
    assert code == 0 and "one grey level" in out


def test_baked_graph_takes_and_returns_uint8_nhwc_like_stylizer(ckpt, generator, tmp_path):
    from toonclip.export.runtime import ort_session
    from toonclip.inference import Stylizer

    out = tmp_path / "baked.onnx"
    assert main(["export", f"ckpt={ckpt}", f"out={out}", "bake=true", "opset=17"]) == 0
    session = ort_session(out)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    got = session.run(None, {"image": image[None]})[0]
    assert got.dtype == np.uint8 and got.shape == (1, SIZE, SIZE, 3)
    want = Stylizer(generator, SIZE)(image)
    assert np.abs(got[0].astype(int) - want.astype(int)).max() <= 1  # one grey level


def test_int8_and_fp16_are_smaller_run_and_report_psnr(ckpt, faces_dir, tmp_path, capsys):
    from toonclip.export.onnx import op_types
    from toonclip.export.runtime import load_model

    sizes = {}
    for precision in ("fp32", "fp16", "int8"):
        out = tmp_path / f"m_{precision}.onnx"
        code, text, err = run(
            capsys,
            f"ckpt={ckpt}",
            f"out={out}",
            f"precision={precision}",
            f"calib={faces_dir}",
            "calib_n=6",
            "opset=17",
        )
        assert code == 0, err
        sizes[precision] = out.stat().st_size
        if precision != "fp32":
            assert f"{precision} vs fp32 on 6 faces: PSNR" in text
        if precision == "int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(out)
        model = load_model(out)
        assert model.precision == precision
        y = model.generator(torch.rand(1, 3, SIZE, SIZE))
        assert y.shape == (1, 3, SIZE, SIZE) and torch.isfinite(y).all()
    assert sizes["int8"] < sizes["fp32"] / 2.5
    assert sizes["fp16"] < sizes["fp32"] * 0.6


def test_coreml_mlprogram_with_image_io_and_fp16_weights(ckpt, tmp_path, capsys):
    pytest.importorskip("coremltools")
    out = tmp_path / "m.mlpackage"
    code, text, err = run(capsys, f"ckpt={ckpt}", "format=coreml", f"out={out}")
    assert code == 0, err
    assert out.is_dir()
    assert "input image: RGB image 64x64" in text and "output cartoon: RGB image 64x64" in text
    assert "weights fp16" in text
    assert "macOS" in text  # says prediction was not run here (or ran, on a Mac)


def test_tflite_round_trip_or_one_clear_line(ckpt, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    code, text, err = run(capsys, f"ckpt={ckpt}", "format=tflite", f"out={out}")
    if importlib.util.find_spec("litert_torch") is None:
        assert code == 2
        line = only_error(err)
        assert "litert-torch" in line and "pip install" in line
    else:  # pragma: no cover - only where the optional extra is installed
        assert code == 0, err
        assert out.is_file() and "max |diff|" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ckpt=/nonexistent/best.ckpt"], "does not exist"),
        (["format=onnx2"], "format=onnx2"),
        (["precision=int4"], "precision=int4"),
        (["precision=int8"], "calib=DIR"),
        (["size=100"], "multiple of 32"),
        (["format=coreml", "out=model.onnx"], ".mlpackage"),
        (["format=coreml", "dynamic=true"], "only apply to format=onnx"),
        (["bake=maybe"], "bake=maybe: use true or false"),
        (["bogus=1"], "bogus"),
        (["precision=int8", "calib=/nonexistent_dir"], "not a folder"),
    ],
)
def test_bad_input_gives_one_clear_line(ckpt, capsys, args, needle):
    base = [] if any(a.startswith("ckpt=") for a in args) else [f"ckpt={ckpt}"]
    code, _, err = run(capsys, *base, *args)
    assert code == 2
    assert needle in only_error(err)


def test_non_checkpoint_file_is_rejected(tmp_path, capsys):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    code, _, err = run(capsys, f"ckpt={bad}")
    assert code == 2 and "not a toonclip checkpoint" in only_error(err)


@pytest.fixture(scope="module")
def blur_ckpt(tmp_path_factory) -> Path:
    """The default generator's output path: residual, the face added back blurred (1 px)."""
    from toonclip.models import build_generator

    torch.manual_seed(0)
    gen = build_generator(ARCH, ENCODER, weights="none", residual=True, residual_blur=1.0)
    torch.nn.init.normal_(gen.net.segmentation_head[0].weight, std=0.01)
    model = {"arch": ARCH, "encoder": ENCODER, "residual": True, "residual_blur": 1.0}
    path = tmp_path_factory.mktemp("blur") / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    state = {"generator." + k: v for k, v in gen.state_dict().items()}
    cfg = {"model": model, "data": {"size": SIZE}}
    torch.save({"hyper_parameters": {"cfg": cfg}, "state_dict": state}, path)
    return path


def test_onnx_carries_the_blurred_skip(blur_ckpt, tmp_path):
    from toonclip.export.onnx import export_onnx, parity
    from toonclip.inference import load_checkpoint

    gen, _ = load_checkpoint(blur_ckpt)
    path = export_onnx(gen, tmp_path / "blur.onnx", 64, dynamic=True)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert parity(gen, path, x) < 1e-3
        assert float((gen(x) - x).abs().max()) > 0.05  # the graph differs from a plain skip


def test_coreml_converts_the_blurred_skip(blur_ckpt, tmp_path, capsys):
    pytest.importorskip("coremltools")
    code, _, err = run(
        capsys, f"ckpt={blur_ckpt}", "format=coreml", f"out={tmp_path / 'b.mlpackage'}"
    )
    assert code == 0, err
