"""scripts/gpu_measure.sh, the GPU measurement of issues 8 and 9, dry-run on the CPU at 32 px.

It runs only in the rare sessions that have a GPU, so these tests keep its commands and options
in step with the CLI: a renamed option fails here rather than on a GPU lease.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO

CPU = ["trainer.accelerator=cpu", "trainer.precision=32-true", "size=32", "model.weights=none"]


def _measure(tmp_path, data, phase, *extra, env=None):
    out = tmp_path / "out"
    bin_dir = Path(sys.executable).parent  # the toonclip entry point of this environment
    full_env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TOONCLIP_DATA": str(data),
        "PEERS": str(data / "peers"),
        **(env or {}),
    }
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_measure.sh"), str(out), phase, *CPU, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=full_env,
        cwd=REPO,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out


@pytest.fixture
def data(tmp_path, synthetic_root):
    """The synthetic pairs, plus test_images/ and a peer model's outputs, as the script expects."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    faces = sorted((root / "ffhq").iterdir())[:2]
    for folder in ("test_images", "peers/faces", "peers/u2net", "peers/u2netp"):
        (root / folder).mkdir(parents=True)
        for f in faces:
            shutil.copy(f, root / folder / f.name)
    return root


def test_train_phase_trains_evaluates_compares_and_packs(tmp_path, data):
    out = _measure(
        tmp_path,
        data,
        "train",
        "data.batch_size=2",
        "trainer.max_steps=2",
        "grid.n_samples=2",
        "grid.tile=32",
    )
    summary = json.loads((out / "json" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 2
    val, train = (
        json.loads((out / "json" / f).read_text()) for f in ("eval.json", "eval_train.json")
    )
    assert val["n_pairs"] > 0 and train["split"] == "train"
    assert val["n_pairs"] + train["n_pairs"] == len(list((data / "ffhq").iterdir()))
    assert (out / "precision_check.txt").read_text().rstrip().endswith(": agree")
    with tarfile.open(out / "gpu_measure.tar.gz") as tar:
        names = set(tar.getnames())
    for name in (
        "compare_peers/compare_faces.png",
        "compare_test/compare_faces.png",
        "eval_val/grid.png",
    ):
        assert f"gpu_256/{name}" in names
    assert not any(n.endswith(".ckpt") for n in names)  # the checkpoints stay out of the tarball


@pytest.mark.slow
def test_bench_phase_writes_every_figure(tmp_path, data):
    out = _measure(tmp_path, data, "bench", "batches=2", "workers=0", env={"COMPILE": "0"})
    assert json.loads((out / "json" / "data_w0.json").read_text())["data_img_per_s"] > 0
    for name in ("train_b2.json", "train_b16_fused.json"):
        bench = json.loads((out / "json" / name).read_text())
        assert bench["plain_img_per_s"] > 0 and bench["fit_train_img_per_s"] > 0, name


def test_an_unknown_phase_is_refused(tmp_path, data):
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_measure.sh"), str(tmp_path / "o"), "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, "TOONCLIP_DATA": str(data)},
    )
    assert proc.returncode == 2 and "not one of: train, bench" in proc.stderr
