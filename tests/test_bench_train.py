"""The training benchmark runs end to end and reports comparable figures."""

from __future__ import annotations

import json

from conftest import run_cli


def test_bench_train_reports_data_plain_toonclip_and_effective(tmp_path, synthetic_root):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "bench-train",
        "size=32",
        "batch=2",
        "steps=2",
        "warmup=3",  # the fit's Throughput skips 3 steps too: 2 of its 5 are timed
        "rounds=1",
        f"data.root={synthetic_root}",
        f"out={out}",
        "loss.layer_weights={relu1_2: 1.0}",
        "loss.style_layer_weights={relu1_2: 1.0}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ratio toonclip / ceiling |" in proc.stdout
    assert "| effective: toonclip train fit" in proc.stdout
    result = json.loads(out.read_text())
    for key in (
        "data_img_per_s",
        "plain_img_per_s",
        "plain_warmup_s",
        "toonclip_img_per_s",
        "fit_train_img_per_s",
        "effective_img_per_s",
    ):
        assert result[key] > 0, key
    # The fit trained warmup + steps steps of `batch` images through the real loader.
    assert result["images_trained"] == (3 + 2) * 2 and result["fit_wall_s"] > 0
    assert result["ratio"] == round(result["toonclip_img_per_s"] / result["plain_img_per_s"], 3)
    assert result["fit_ratio"] == round(
        result["fit_train_img_per_s"] / result["plain_img_per_s"], 3
    )
    assert (result["size"], result["batch"], result["timed_steps"]) == (32, 2, 2)


def test_bench_train_data_only_measures_the_loader_alone(tmp_path, synthetic_root):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "bench-train",
        "size=32",
        "batch=2",
        "steps=4",
        "warmup=1",
        "data_only=true",
        "data.num_workers=1",
        f"data.root={synthetic_root}",
        f"out={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["data_img_per_s"] > 0 and result["num_workers"] == 1
    assert "plain_img_per_s" not in result and "ratio" not in proc.stdout
