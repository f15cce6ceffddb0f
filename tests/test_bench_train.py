"""The training benchmark runs end to end and reports comparable figures."""

from __future__ import annotations

import json

from conftest import run_cli


def test_bench_train_reports_data_plain_and_toonclip(tmp_path, synthetic_root):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "bench-train",
        "size=32",
        "batch=2",
        "steps=2",
        "warmup=1",
        "rounds=1",
        f"data.root={synthetic_root}",
        f"out={out}",
        "loss.layer_weights={relu1_2: 1.0}",
        "loss.style_layer_weights={relu1_2: 1.0}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ratio toonclip / plain |" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("data_img_per_s", "plain_img_per_s", "toonclip_img_per_s"):
        assert result[key] > 0, key
    assert result["ratio"] == round(result["toonclip_img_per_s"] / result["plain_img_per_s"], 3)
    assert (result["size"], result["batch"], result["timed_steps"]) == (32, 2, 2)
