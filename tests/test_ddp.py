"""Two-process DDP training on the CPU (gloo), end to end, as `toonclip train` runs it."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from conftest import run_cli

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def _ddp_overrides(root, runs_root) -> list[str]:
    """Like tiny_overrides, but no run_dir: every rank must find rank zero's folder itself."""
    return [
        f"data.root={root}",
        "data.size=32",
        "data.batch_size=2",
        "data.samples_per_epoch=16",
        f"runs_root={runs_root}",
        "model.weights=none",
        "loss.vgg_weights=none",
        "trainer.max_steps=3",
        "trainer.val_every_n_steps=2",
        "trainer.checkpoint_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "grid.n_samples=2",
        "grid.tile=32",
        "loss.layer_weights={relu1_2: 1.0}",
        "loss.style_layer_weights={relu1_2: 1.0}",
        *DDP,
    ]


def test_two_rank_ddp_run_writes_one_run_folder(tmp_path, synthetic_root):
    proc = run_cli("train", *_ddp_overrides(synthetic_root, tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 1 used rank zero's folder, not a timestamp of its own
    run = runs[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
    assert summary["global_step"] == 3
    # The epoch sampler was sharded: 16 samples / (batch 2 x 2 ranks) = 4 steps an epoch.
    assert summary["steps_per_epoch"] == 4
    assert summary["images_trained"] == 3 * 2 * 2
    assert summary["final"]["val/psnr"] > 0 and summary["identity"]["val/psnr"] > 0
    for name in ("metrics.csv", "config.yaml", "overrides.yaml", "val_files.txt"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run / "grids").glob("step_*.png")) == [
        "step_000002.png",
        "step_000003.png",
    ]
    assert not list(run.glob("*.tmp")) and proc.stderr.count("run folder:") == 1


# Loaded by every Python process of the run through PYTHONPATH; acts on rank 1 only.
_FAIL_AFTER_TRAINING = """
    import os
    if os.environ.get("LOCAL_RANK") == "1":
        import toonclip.training.run as run
        _train = run.train
        def _fail(*args, **kwargs):
            _train(*args, **kwargs)
            raise RuntimeError("injected: rank 1 fails after training")
        run.train = _fail
"""
_FAIL_DURING_TRAINING = """
    import os
    if os.environ.get("LOCAL_RANK") == "1":
        from toonclip.training.module import ToonModule
        _step = ToonModule.training_step
        def _fail(self, batch, batch_idx):
            if self.global_step >= 1:
                raise RuntimeError("injected: rank 1 fails at step 2")
            return _step(self, batch, batch_idx)
        ToonModule.training_step = _fail
"""


@pytest.mark.slow  # ~30-50 s each on 2 busy cores
@pytest.mark.parametrize("inject", [_FAIL_AFTER_TRAINING, _FAIL_DURING_TRAINING])
def test_a_failing_rank_fails_the_command(tmp_path, synthetic_root, inject):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(inject))
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    proc = run_cli(
        "train",
        *_ddp_overrides(synthetic_root, tmp_path / "runs"),
        env={"PYTHONPATH": pythonpath},
        timeout=400,
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "injected: rank 1" in proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "rank 1 exited with code" in summary["error"]
