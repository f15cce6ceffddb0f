"""End-to-end training on synthetic pairs: run folder, summary, grids, predict, resume, errors."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, cli, make_pairs, one_error, run_cli
from PIL import Image

from toonclip.inference import Stylizer, load_checkpoint
from toonclip.training.distributed import checkpoint_step


def test_run_folder_has_everything(tiny_run):
    assert tiny_run.name == "unetplusplus__mobilenetv3_large_100"
    for name in (
        "config.yaml",
        "overrides.yaml",
        "metrics.csv",
        "val_files.txt",
        "summary.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "grids/latest.png",
    ):
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "tb").glob("events.out.tfevents.*"))
    assert len(list((tiny_run / "grids").glob("step_*.png"))) == 2  # validated after each step
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert summary["params"] == 6_917_635 and summary["gflops"] > 0
    assert 0 < summary["best"]["val/psnr"] < 60 and -1 <= summary["best"]["val/ssim"] <= 1
    assert summary["weights"]["encoder"]["loaded"] == "random"
    assert summary["versions"]["torch"] == torch.__version__.split("+")[0]
    # Both steps fall in Throughput's 3-step warm-up: no inner-loop figure, but the effective
    # one (images / wall seconds of fit) counts every image.
    assert summary["train_img_per_s"] is None and summary["images_trained"] == 4
    assert 0 < summary["effective_img_per_s"] == pytest.approx(4 / summary["fit_wall_s"], rel=0.02)
    header = (tiny_run / "metrics.csv").read_text().splitlines()[0]
    # the default loss is L1 + SSIM: no VGG16 terms, so no val/perceptual or val/style column
    for column in ("val/psnr", "val/ssim", "val/pixel", "val/dssim", "val/identity_psnr"):
        assert column in header
    assert "val/perceptual" not in header and "val/style" not in header


def test_grid_rows_are_face_prediction_target(tiny_run, synthetic_root):
    grid = np.asarray(Image.open(tiny_run / "grids" / "latest.png")).astype(int)
    # rows: the first (up to grid.n_samples=2) val pairs, in val_files.txt order; 3 columns of
    # 32 px tiles, 2 px apart, under a header band
    stems = (tiny_run / "val_files.txt").read_text().split()[:2]
    assert grid.shape[1] == 3 * 32 + 4 * 2
    head = grid.shape[0] - len(stems) * 34 - 2
    assert stems and 16 < head < 60 and (grid[:head] < 128).any()  # header text
    for row, stem in enumerate(stems):
        y = head + 2 + row * 34
        face, prediction, target = (grid[y : y + 32, 2 + c * 34 : 34 + c * 34] for c in range(3))
        want_face = np.asarray(
            Image.open(synthetic_root / "ffhq" / f"{stem}.jpg").resize((32, 32), Image.BOX)
        )
        want_target = np.asarray(
            Image.open(synthetic_root / "comics_heroes" / f"{stem}.png").resize((32, 32), Image.BOX)
        )
        # the cartoon is the face posterised (each pixel moved by up to 32 levels): a swapped
        # column is ~16 levels off, the right one within resampling differences
        assert np.abs(face - want_face).mean() < 6 < np.abs(face - want_target).mean()
        assert np.abs(target - want_target).mean() < 6 < np.abs(target - want_face).mean()
        assert np.abs(prediction - face).mean() > 1 and prediction.std() > 10  # a drawn picture


def test_checkpoint_round_trips_through_inference(tiny_run, tiny_checkpoint):
    generator, cfg = load_checkpoint(tiny_checkpoint)
    assert (cfg.model.arch, cfg.data.size) == ("unetplusplus", 32)
    face = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    out = {m: Stylizer(generator, cfg.data.size, mode=m)(face) for m in ("resize", "native")}
    for picture in out.values():
        assert picture.shape == face.shape and picture.dtype == np.uint8
    # native: the network at the image's own size (50 x 70 reflect-padded to 64 x 96), cropped
    x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = generator.eval()(torch.nn.functional.pad(x, (0, 26, 0, 14), mode="reflect"))
    want = y[..., :50, :70].clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
    assert np.abs(out["native"].astype(int) - want).max() <= 1
    # resize runs it at 32 px: on a noise face the two must not be the same picture
    assert np.abs(out["native"].astype(int) - out["resize"]).mean() > 10


def test_predict_cli_on_file_and_folder(capsys, tiny_run, synthetic_root, tmp_path):
    code, _, err = cli(
        capsys,
        "predict",
        f"ckpt={tiny_run}",
        f"input={synthetic_root / 'ffhq'}",
        f"output={tmp_path / 'o'}",
    )
    assert code == 0, err[-1500:]
    assert len(list((tmp_path / "o").glob("*.png"))) == 12
    one = synthetic_root / "ffhq" / "face_000.jpg"
    code, _, err = cli(
        capsys,
        "predict",
        f"ckpt={tiny_run / 'checkpoints' / 'best.ckpt'}",
        f"input={one}",
        f"output={tmp_path / 'p'}",
        "mode=native",
    )
    assert code == 0 and (tmp_path / "p" / "face_000.png").is_file()
    assert Image.open(tmp_path / "p" / "face_000.png").size == Image.open(one).size


def test_bad_image_stops_before_training_with_one_line(capsys, tmp_path, tiny_overrides):
    root = make_pairs(tmp_path / "d", n=4, size=32)
    (root / "comics_heroes" / "face_002.png").write_bytes(b"\x89PNG broken")
    code, _, err = cli(capsys, "train", *tiny_overrides(root, tmp_path / "run"))
    assert code != 0
    line = one_error(err)
    assert "face_002.png" in line and "data.skip_bad=true" in line
    assert not (tmp_path / "run" / "checkpoints").exists()
    code, _, err = cli(
        capsys, "train", *tiny_overrides(root, tmp_path / "run2"), "data.skip_bad=true"
    )
    assert code == 0, err[-1500:]
    assert "skipped 1 pair(s)" in err and "face_002.png" in err
    summary = json.loads((tmp_path / "run2" / "summary.json").read_text())
    assert summary["skipped_pairs"] == ["face_002"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.encoder=mobilenetv3_large_10O", "nearest: mobilenetv3_large_100"),
        ("model.arch=unetpp", "model.arch"),
        ("model.residual_blur=abc", "model.residual_blur=abc: use a Gaussian sigma >= 0"),
        ("model.residual_blur=-1", "model.residual_blur=-1: use a Gaussian sigma >= 0"),
        ("model.drop_path=abc", "model.drop_path=abc: use a rate in [0, 1)"),
        ("model.drop_path=1.5", "model.drop_path=1.5: use a rate in [0, 1)"),
    ],
)
def test_bad_names_fail_fast_without_a_run_folder(
    capsys, tmp_path, synthetic_root, tiny_overrides, override, needle
):
    code, _, err = cli(capsys, "train", *tiny_overrides(synthetic_root, tmp_path / "run"), override)
    assert code == 2 and needle in one_error(err)
    assert not (tmp_path / "run").exists()


def test_existing_run_is_never_overwritten(capsys, tiny_run, synthetic_root, tiny_overrides):
    code, _, err = cli(capsys, "train", *tiny_overrides(synthetic_root, tiny_run))
    assert code == 2 and "resume=true" in one_error(err)


def test_killed_run_resumes_from_last_checkpoint(tmp_path, synthetic_root, tiny_overrides):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "toonclip.cli",
        "train",
        *tiny_overrides(synthetic_root, run_dir, steps=500),
        "trainer.val_every_n_steps=100",
        "trainer.log_every_n_steps=1",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "TOONCLIP_OFFLINE": "1"},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step_at_kill = 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step_at_kill = checkpoint_step(last)
            except Exception:  # noqa: BLE001 - caught mid-write; try again
                step_at_kill = 0
            if step_at_kill >= 3 and (run_dir / "metrics.csv").is_file():
                break
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step_at_kill >= 3, "training never wrote a checkpoint"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"  # died hard

    steps_before = _logged_steps(run_dir)
    assert steps_before, "metrics.csv had rows before the kill"
    # The process may have written a newer last.ckpt (and logged more steps) after we looked.
    resume_from = checkpoint_step(last)
    target = resume_from + 2
    done = run_cli("train", f"run_dir={run_dir}", "resume=true", f"trainer.max_steps={target}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Restoring states from the checkpoint" in done.stderr + done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == target
    assert checkpoint_step(last) == target
    # History up to the checkpoint is kept; steps after it are re-run and logged once more.
    steps_after = _logged_steps(run_dir)
    kept = {s for s in steps_before if s < resume_from}
    assert kept and kept <= set(steps_after)
    assert max(steps_after) == target - 1  # logged steps count from 0
    assert set(range(target)) <= set(steps_after)


def _logged_steps(run_dir) -> list[int]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f) if r.get("step")]


def test_nan_loss_fails_with_one_line(capsys, tmp_path, synthetic_root, tiny_overrides):
    code, _, err = cli(
        capsys,
        "train",
        *tiny_overrides(synthetic_root, tmp_path / "run"),
        "optim.optimizer.lr=1e30",
        "loss.pixel_weight=1e30",
        "trainer.gradient_clip_val=null",
    )
    assert code == 2
    assert "loss became" in one_error(err)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "loss became" in summary["error"]


def _train_in_process(overrides: list[str]):
    from toonclip.training.run import prepare, train

    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_puts_weights_and_batches_in_nhwc(channels_last):
    from toonclip.config import compose
    from toonclip.training.module import ToonModule

    cfg = compose(["model.weights=none", f"model.channels_last={channels_last}"])
    module = ToonModule(cfg)
    module.configure_model()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    convs = [m.weight for m in module.generator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs if w.shape[-1] > 1)
    pixels = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    batch = module.on_after_batch_transfer({"face": pixels, "cartoon": pixels.clone()}, 0)
    for key in ("face", "cartoon"):
        assert batch[key].dtype == torch.float32 and batch[key].is_contiguous(memory_format=fmt)
        assert batch[key].is_contiguous() != channels_last  # NCHW-contiguous only without it


@pytest.mark.parametrize(
    "options",
    [
        ["model.channels_last=false"],  # the default is true
        ["trainer.precision=bf16-mixed", "model.channels_last=true"],  # gpu_256's, ~4 s on a CPU
    ],
)
def test_precision_and_channels_last_options_train(
    tmp_path, synthetic_root, tiny_overrides, options
):
    run = _train_in_process(
        [
            *tiny_overrides(synthetic_root, tmp_path / "run", steps=1),
            "trainer.accelerator=cpu",
            *options,
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 1
    assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.slow
def test_torch_compile_option_trains_and_checkpoint_loads(tmp_path, synthetic_root, tiny_overrides):
    run = _train_in_process(
        [*tiny_overrides(synthetic_root, tmp_path / "run", steps=2), "model.compile=true"]
    )
    generator, _ = load_checkpoint(run / "checkpoints" / "last.ckpt")  # `_orig_mod.` prefix handled
    assert generator(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO.parent / "shared/data/comics-heroes/ffhq").is_dir(), reason="no shared data"
)
def test_smoke_experiment_on_the_shared_data(tmp_path):
    run = _train_in_process(
        [
            "experiment=smoke",
            f"data.root={REPO.parent / 'shared/data/comics-heroes'}",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and len(list((run / "grids").glob("step_*.png"))) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_channels_last_training(tmp_path, synthetic_root, tiny_overrides):
    run = _train_in_process(
        [
            *tiny_overrides(synthetic_root, tmp_path / "run", steps=4),
            "trainer.accelerator=gpu",
            "trainer.precision=bf16-mixed",
            "model.channels_last=true",
            "data.size=64",
            "data.augment.device=gpu",  # gpu_256's batch augmentation, on CUDA tensors
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train_img_per_s"] > 0


def _val_steps(run_dir) -> list[int]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f) if r.get("val/psnr")]


def test_short_run_ends_with_a_validation_and_records_final_identity_gain(
    tmp_path, synthetic_root, tiny_overrides, capsys
):
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    from toonclip.data.datamodule import PairDataModule

    run = _train_in_process(
        [
            *tiny_overrides(synthetic_root, tmp_path / "run", steps=3),
            "trainer.val_every_n_steps=2",
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 3
    # Validated at step 2 (cadence) and at step 3 (the last step), once each.
    assert sorted(p.name for p in (run / "grids").glob("step_*.png")) == [
        "step_000002.png",
        "step_000003.png",
    ]
    assert _val_steps(run) == [1, 2]  # metrics.csv counts logged steps from 0
    final, identity, gain = summary["final"], summary["identity"], summary["gain"]
    assert final["step"] == 2 and set(identity) == {"val/psnr", "val/ssim", "val/l1"}
    assert gain["psnr"] == pytest.approx(final["val/psnr"] - identity["val/psnr"], abs=1e-3)
    assert gain["ssim"] == pytest.approx(final["val/ssim"] - identity["val/ssim"], abs=1e-3)
    # The identity baseline is the face scored as the prediction on the same val split.
    dm = PairDataModule(str(synthetic_root), size=32, batch_size=2)
    dm.setup("fit")
    faces = torch.stack([dm.val_set[i]["face"] for i in range(len(dm.val_set))]).float() / 255
    targets = torch.stack([dm.val_set[i]["cartoon"] for i in range(len(dm.val_set))]).float()
    targets /= 255
    psnr = PeakSignalNoiseRatio(data_range=1.0)(faces, targets).item()
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0)(faces, targets).item()
    assert identity["val/psnr"] == pytest.approx(psnr, abs=1e-3)
    assert identity["val/ssim"] == pytest.approx(ssim, abs=1e-3)
    assert identity["val/l1"] == pytest.approx((faces - targets).abs().mean().item(), abs=1e-3)
    # Effective throughput beside the inner-loop figure.
    assert summary["images_trained"] == 3 * 2 and summary["fit_wall_s"] > 0
    assert summary["effective_img_per_s"] == pytest.approx(6 / summary["fit_wall_s"], rel=0.02)
    # Both validations are past the first tenth of 3 steps: their PSNR change is the swing.
    with open(run / "metrics.csv", newline="") as f:
        psnr = [float(r["val/psnr"]) for r in csv.DictReader(f) if r.get("val/psnr")]
    swing = summary["stability"]
    assert swing["validations"] == 2 and swing["after_step"] == 0
    assert swing["max_change_db"] == pytest.approx(abs(psnr[1] - psnr[0]), abs=1e-3)
    err = capsys.readouterr().err
    for line in (
        "final:    val/psnr",
        "identity: val/psnr",
        "gain:     PSNR",
        "img/s effective",
        "val PSNR: moved at most",
    ):
        assert line in err


def test_stability_ignores_the_first_tenth_and_repeated_validations(tmp_path):
    from toonclip.training.val_history import stability

    csv_path = tmp_path / "metrics.csv"
    rows = [
        "step,train/loss,val/psnr",
        "5,0.9,",
        "49,,8.0",  # the first tenth of 1000 steps: its 9 dB jump to step 199 is not counted
        "199,,17.0",
        "599,,17.5",
        "599,,17.5",  # validated again at the same step (a resumed run): one point
        "999,,16.2",
    ]
    csv_path.write_text("\n".join(rows) + "\n")
    assert stability(csv_path) == {"max_change_db": 1.3, "after_step": 99, "validations": 3}
    csv_path.write_text("step,val/psnr\n99,17.0\n")
    assert stability(csv_path) is None  # one validation: nothing to compare
    assert stability(tmp_path / "missing.csv") is None


def test_a_stopped_run_records_what_it_reached(tmp_path):
    from toonclip.training.summary import record_failure

    (tmp_path / "metrics.csv").write_text(
        "step,val/psnr,val/ssim,val/l1,val/identity_psnr,val/identity_ssim,val/identity_l1\n"
        "299,17.4,0.57,0.09,16.3,0.52,0.11\n599,17.8,0.59,0.085,16.3,0.52,0.11\n"
    )
    summary = {"name": "run"}
    record_failure(summary, KeyboardInterrupt(), tmp_path, 12.0)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "interrupted" and "resume=true" in saved["error"]
    assert saved["best"]["val/psnr"] == 17.8 and saved["final"]["step"] == 599
    assert saved["gain"]["psnr"] == pytest.approx(1.5)
    assert saved["stability"]["max_change_db"] == pytest.approx(0.4)
    # Before any validation there is nothing to record.
    (tmp_path / "metrics.csv").unlink()
    record_failure({"name": "run"}, RuntimeError("boom"), tmp_path, 1.0)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "failed" and "final" not in saved


def test_samples_per_epoch_sets_steps_per_epoch(tmp_path, synthetic_root, tiny_overrides):
    run = _train_in_process(
        [
            *tiny_overrides(synthetic_root, tmp_path / "run"),
            "trainer.max_steps=-1",
            "trainer.max_epochs=1",
            "data.samples_per_epoch=8",
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    # 10 train pairs at batch 2 would be 5 steps an epoch; 8 samples are 4.
    assert summary["steps_per_epoch"] == 4 and summary["global_step"] == 4
    assert _val_steps(run) == [3]  # one validation, at the end of the epoch
    assert summary["final"]["step"] == 3


def test_run_stopped_by_max_time_ends_with_a_validation(tmp_path, synthetic_root, tiny_overrides):
    run = _train_in_process(
        [
            *tiny_overrides(synthetic_root, tmp_path / "run", steps=100_000),
            "trainer.val_every_n_steps=100000",
            "trainer.max_time={seconds: 2}",
        ]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and 0 < summary["global_step"] < 100_000
    assert _val_steps(run)[-1] == summary["global_step"] - 1
    assert summary["final"]["val/psnr"] > 0


def test_recipe_callbacks_sit_between_the_grid_and_precise_bn(tmp_path, monkeypatch):
    import lightning as L

    from toonclip.config import compose
    from toonclip.training import trainer as trainer_mod
    from toonclip.training.callbacks import PreciseBatchNorm, ValidationGrid

    class Recipe(L.Callback):
        pass

    monkeypatch.setattr(trainer_mod, "recipe_callbacks", lambda cfg: [Recipe(), Recipe()])
    cfg = compose(["trainer.accelerator=cpu"])
    trainer = trainer_mod.build_trainer(cfg, tmp_path / "run")
    kinds = [type(c) for c in trainer.callbacks]
    grid, precise = kinds.index(ValidationGrid), kinds.index(PreciseBatchNorm)
    assert kinds[grid + 1 : precise] == [Recipe, Recipe]


@pytest.mark.parametrize(("max_epochs", "shown"), [(-1, "Epoch 1"), (3, "Epoch 1/2")])
def test_progress_bar_names_epochs_without_a_negative_limit(max_epochs, shown):
    from types import SimpleNamespace

    from toonclip.training.trainer import LoggedStepProgressBar

    bar = LoggedStepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(1).strip() == shown


def test_bf16_mixed_validation_scores_ssim_in_float32(synthetic_root, tmp_path, tiny_overrides):
    """`gpu_256` validates under bf16-mixed. The identity figures score the face itself, no
    network output, so they must not depend on the precision; when autocast ran torchmetrics'
    SSIM convolutions in bf16 they did (a face against its cartoon: -0.16 instead of 0.50)."""
    from toonclip.training.run import prepare, train

    identity = {}
    for precision in ("32-true", "bf16-mixed"):
        overrides = [
            *tiny_overrides(synthetic_root, tmp_path / precision, steps=1),
            f"trainer.precision={precision}",
        ]
        cfg, run_dir, ckpt = prepare(overrides)
        train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)
        identity[precision] = json.loads((run_dir / "summary.json").read_text())["identity"]
    assert identity["bf16-mixed"]["val/ssim"] == pytest.approx(
        identity["32-true"]["val/ssim"], abs=2e-4
    )
    assert identity["bf16-mixed"]["val/psnr"] == pytest.approx(
        identity["32-true"]["val/psnr"], abs=2e-3
    )
