"""`toonclip bench`: the size / latency / PSNR table, its JSON, the ORT-vs-PyTorch ratio line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toonclip.cli import main


@pytest.fixture(scope="module")
def ckpt(small_checkpoint) -> Path:
    return small_checkpoint


@pytest.fixture(scope="module")
def fixed_onnx(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fixed") / "fixed64.onnx"
    assert main(["export", f"ckpt={ckpt}", f"out={out}", "opset=17", "threads=1"]) == 0
    return out


def test_bench_table_json_and_ratio(ckpt, fixed_onnx, synthetic_root, tmp_path, capsys):
    out = tmp_path / "bench"
    args = [
        str(ckpt),
        str(fixed_onnx),
        "size=64,96",
        "threads=1",
        "warmup=1",
        "runs=2",
        f"faces={synthetic_root / 'ffhq'}",
        "onnx=fp32,int8",
        "opset=17",
        f"out={out}",
    ]
    assert main(["bench", *args]) == 0
    text = capsys.readouterr().out
    assert "| model | format | precision | MB | 64px ms | 64px fps | 96px ms |" in text
    assert "ONNX Runtime fp32 vs PyTorch eager (speed-up): 64px" in text
    assert "ONNX Runtime int8 vs PyTorch eager" in text
    data = json.loads((out / "bench.json").read_text())
    assert (out / "bench.md").read_text().startswith("| model |")
    rows = {(r["format"], r["precision"], r["model"]): r for r in data["rows"]}
    torch_row = rows[("torch", "fp32", "best.ckpt")]
    fp32 = rows[("onnx", "fp32", "toonclip_fp32.onnx")]
    int8 = rows[("onnx", "int8", "toonclip_int8.onnx")]
    fixed = rows[("onnx", "fp32", "fixed64.onnx")]
    assert torch_row["is_ref"] and set(torch_row["latency_ms"]) == {"64", "96"}
    assert all(v > 0 for r in (torch_row, fp32, int8) for v in r["latency_ms"].values())
    assert set(fixed["latency_ms"]) == {"64"}  # a fixed 64 px graph cannot run at 96
    assert fp32["psnr_db"]["64"] > 60 and fixed["psnr_db"]["64"] > 60  # same maths as PyTorch
    assert 10 < int8["psnr_db"]["64"] < fp32["psnr_db"]["64"]  # quantised: close, not equal
    assert int8["mb"] < fp32["mb"] / 2.5
    assert "| fixed64.onnx | onnx | fp32 |" in text and "| n/a | n/a |" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["size=100"], "multiples of 32"),
        (["size=abc"], "integers"),
        (["/nonexistent/model.onnx"], "does not exist"),
        (["warmups=3"], "warmups"),
    ],
)
def test_bench_bad_input_one_line(ckpt, capsys, args, needle):
    models = [] if any(a.startswith("/") for a in args) else [str(ckpt)]
    assert main(["bench", *models, *args]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err


def test_bench_without_models_is_usage_error(capsys):
    assert main(["bench"]) == 2
    assert "usage: toonclip bench MODEL" in capsys.readouterr().err


def test_non_onnx_file_named_onnx_is_rejected(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["bench", str(bad), "size=64"]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
