"""The optional adversarial term (issue 8): PatchGAN discriminator, GAN losses, two optimisers by
hand with a step count that still counts batches, EMA, resume, export, and config checks."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from conftest import cli, one_error

from toonclip.config import compose
from toonclip.errors import ConfigError
from toonclip.losses.adversarial import (
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
    patch_map_size,
)
from toonclip.training.module import NonFiniteLossError, ToonModule

SMALL_NET = ["model.arch=unet", "model.encoder=mobilenetv3_small_050"]


def _overrides(root, run_dir, *extra, steps=4) -> list[str]:
    return [
        f"data.root={root}",
        "data.size=32",
        "data.batch_size=2",
        f"run_dir={run_dir}",
        *SMALL_NET,
        "model.weights=none",
        f"trainer.max_steps={steps}",
        "trainer.val_every_n_steps=2",
        "trainer.checkpoint_every_n_steps=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "grid.n_samples=2",
        "grid.tile=32",
        *extra,
    ]


def test_the_default_builds_no_discriminator_and_keeps_automatic_optimisation(
    synthetic_root, tmp_path
):
    from toonclip.training.trainer import trainer_kwargs

    cfg = compose(_overrides(synthetic_root, tmp_path / "r", "trainer.gradient_clip_val=1.0"))
    assert cfg.adversarial.weight == 0
    module = ToonModule(cfg)
    assert module.discriminator is None and module.automatic_optimization
    assert not any(k.startswith("discriminator.") for k in module.state_dict())
    assert isinstance(module.configure_optimizers(), torch.optim.Optimizer)  # one, as before
    assert trainer_kwargs(cfg)["gradient_clip_val"] == 1.0  # Lightning clips, as before


def test_discriminator_scores_a_patch_map():
    torch.manual_seed(0)
    disc = PatchDiscriminator(ndf=8, n_layers=3)
    for size, side in ((64, 6), (128, 14)):
        face, cartoon = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
        assert disc(face, cartoon).shape == (2, 1, side, side)
        assert patch_map_size(size, 3) == side
    assert patch_map_size(32, 4) == 0  # too deep for 32 px: refused by the config check


def test_a_downsampling_discriminator_cannot_see_or_ask_for_a_2px_checker():
    torch.manual_seed(0)
    # eval(): in train mode spectral norm's power iteration moves the weights at every call.
    disc = PatchDiscriminator(ndf=8, n_layers=2, downsample=2).eval()
    face, cartoon = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert disc(face, cartoon).shape == (2, 1, 6, 6) and patch_map_size(64, 2, 2) == 6
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2).float() * 0.2 - 0.1  # +-0.1, period 2 px
    assert torch.allclose(disc(face, cartoon), disc(face, cartoon + checker), atol=1e-6)
    fake = cartoon.clone().requires_grad_(True)
    generator_loss(disc(face, fake)).backward()
    blocks = fake.grad.unfold(2, 2, 2).unfold(3, 2, 2)  # (N, 3, 32, 32, 2, 2)
    assert fake.grad.abs().max() > 0
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    # The full-size discriminator does see it: the default keeps pix2pix's behaviour.
    full = PatchDiscriminator(ndf=8, n_layers=3).eval()
    assert not torch.allclose(full(face, cartoon), full(face, cartoon + checker), atol=1e-3)


def test_gan_losses_are_scalars_with_the_documented_values():
    half, ones, zeros = (
        torch.full((2, 1, 3, 3), 0.5),
        torch.ones(2, 1, 3, 3),
        torch.zeros(2, 1, 3, 3),
    )
    assert discriminator_loss(half, half).item() == pytest.approx(0.25)  # lsgan, D unsure
    assert discriminator_loss(ones, zeros).item() == 0  # lsgan, D right everywhere
    assert generator_loss(ones).item() == 0 and generator_loss(zeros).item() == 1
    assert discriminator_loss(zeros, zeros, "hinge").item() == pytest.approx(2.0)
    assert generator_loss(ones, "hinge").item() == -1
    fake = torch.zeros(1, 1, 2, 2, requires_grad=True)
    generator_loss(fake).backward()
    assert fake.grad.abs().sum() > 0 and generator_loss(fake).dim() == 0
    with pytest.raises(ConfigError, match="adversarial.loss=wgan"):
        generator_loss(fake, "wgan")


class _Count(L.Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


def test_both_networks_learn_and_global_step_counts_batches(synthetic_root, tmp_path):
    from toonclip.data.datamodule import PairDataModule

    cfg = compose(
        _overrides(
            synthetic_root,
            tmp_path / "r",
            "adversarial.weight=0.5",
            "ema.decay=null",
            "trainer.gradient_clip_val=0.5",
        )
    )
    torch.manual_seed(0)
    module = ToonModule(cfg)
    assert not module.automatic_optimization
    clipped = []
    clip = module.clip_gradients
    module.clip_gradients = lambda opt, *a: clipped.append(opt) or clip(opt, *a)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    count = _Count()
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[count],
    )
    trainer.fit(module, datamodule=PairDataModule(**cfg.data))
    # Two optimiser steps per batch; global_step (max_steps) still counts batches.
    assert count.batches == 3 and trainer.global_step == 3
    assert clipped == [module.optimizers()[0].optimizer] * 3  # the generator's, once a step
    after = module.state_dict()
    for prefix in ("generator.", "discriminator."):
        keys = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()]
        assert any(not torch.equal(before[k], after[k]) for k in keys), prefix


def _rows(run_dir, column) -> dict[int, float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(f) if r.get(column)}


@pytest.fixture(scope="module")
def adv_run(tmp_path_factory, synthetic_root):
    """4 steps with the term, EMA on (the default), gradient clipping from the config."""
    from toonclip.training.run import prepare, train

    run_dir = tmp_path_factory.mktemp("adv") / "run"
    overrides = _overrides(
        synthetic_root, run_dir, "adversarial.weight=0.05", "trainer.gradient_clip_val=0.5"
    )
    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


def test_a_run_logs_the_parts_and_saves_what_a_resume_needs(adv_run):
    import json

    from toonclip.inference import load_checkpoint

    summary = json.loads((adv_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 4
    for column in ("train/adv_g", "train/adv_d", "train/d_real", "train/d_fake"):
        assert sorted(_rows(adv_run, column)) == [0, 1, 2, 3], column  # one row per batch
    ckpt = torch.load(adv_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and len(ckpt["optimizer_states"]) == 2
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    assert any(k.startswith("discriminator.") for k in ckpt["current_model_state"])
    # EMA updated once per batch, not once per optimiser step
    assert int(ckpt["averaging_state"]["n_averaged"]) == 4
    generator, _ = load_checkpoint(adv_run / "checkpoints" / "last.ckpt")  # generator keys only
    assert not any("discriminator" in k for k in generator.state_dict())


def test_a_run_with_the_term_resumes(adv_run, tmp_path):
    import json
    import shutil

    from toonclip.training.run import prepare, train

    run_dir = tmp_path / "copy"
    shutil.copytree(adv_run, run_dir)
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    with pytest.raises(ConfigError, match="trained with the adversarial term"):
        prepare([f"run_dir={run_dir}", "resume=true", "adversarial.weight=0"])
    with pytest.raises(ConfigError, match="trained with adversarial.ndf=32"):
        prepare([f"run_dir={run_dir}", "resume=true", "adversarial.ndf=16"])
    cfg, run_dir, ckpt = prepare([f"run_dir={run_dir}", "resume=true", "trainer.max_steps=6"])
    assert cfg.adversarial.weight == 0.05 and ckpt is not None
    train(cfg, run_dir, ckpt_path=ckpt)
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 6
    # two more batches logged their parts (their step numbers: resuming a finished run's final
    # checkpoint, Lightning logs them as 5 and 6, with or without the term)
    assert len([s for s in _rows(run_dir, "train/adv_d") if s > 3]) == 2
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["global_step"] == 6
    key = next(k for k in after["current_model_state"] if k.endswith("original"))
    assert not torch.equal(before["current_model_state"][key], after["current_model_state"][key])


def test_a_non_finite_loss_still_stops_the_run(synthetic_root, tmp_path):
    from toonclip.training.run import prepare, train

    overrides = _overrides(
        synthetic_root,
        tmp_path / "r",
        "adversarial.weight=0.05",
        "optim.optimizer.lr=1e30",
        "loss.pixel_weight=1e30",
        steps=3,
    )
    cfg, run_dir, ckpt = prepare(overrides)
    with pytest.raises(NonFiniteLossError, match="became"):
        train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("adversarial.weight=-1", "adversarial.weight=-1: use a number >= 0"),
        ("adversarial.weight=0.1 adversarial.lr=0", "adversarial.lr=0: use a number > 0"),
        ("adversarial.weight=0.1 adversarial.loss=wgan", "adversarial.loss=wgan: use one of"),
        ("adversarial.weight=0.1 adversarial.n_layers=0", "adversarial.n_layers=0: use an"),
        ("adversarial.weight=0.1 adversarial.ndf=0", "adversarial.ndf=0: use an integer >= 1"),
        ("adversarial.weight=0.1 adversarial.betas=[0.5]", "adversarial.betas=[0.5]"),
        ("adversarial.weight=0.1 adversarial.n_layers=4", "adversarial.n_layers<=3"),
        ("adversarial.weight=0.1 adversarial.downsample=0", "adversarial.downsample=0: use an"),
        ("adversarial.weight=0.1 adversarial.downsample=2", "adversarial.n_layers<=2"),
    ],
)
def test_bad_values_fail_in_one_line(synthetic_root, tmp_path, override, needle):
    from toonclip.training.run import prepare

    with pytest.raises(ConfigError) as info:
        prepare([*_overrides(synthetic_root, tmp_path / "r"), *override.split()])
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()


def test_bad_value_on_the_command_line_and_distillation_are_refused(
    capsys, synthetic_root, tmp_path
):
    from toonclip.training.run import prepare

    code, _, err = cli(
        capsys,
        "train",
        *_overrides(synthetic_root, tmp_path / "r"),
        "adversarial.weight=0.1",
        "adversarial.loss=wgan",
    )
    assert code == 2 and "adversarial.loss=wgan" in one_error(err)
    distill = ["distill=default", "model=student", f"distill.teacher={tmp_path}"]
    with pytest.raises(ConfigError, match="with distillation: not supported") as info:
        prepare([*_overrides(synthetic_root, tmp_path / "d"), *distill, "adversarial.weight=0.1"])
    assert "\n" not in str(info.value)
