"""The training step with the adversarial term: two optimisers, stepped by hand.

Lightning's automatic optimisation takes one optimiser, so a module with a discriminator sets
`automatic_optimization = False` and ToonModule.training_step calls `adversarial_step`. Per batch:

1. generator: objective (+ temporal) + weight x G-side GAN loss (from `start_step` on), one
   backward, one step of its optimiser and of its scheduler (per step, as automatic
   optimisation would). Clipping by `trainer.gradient_clip_val` happens in the
   on_before_optimizer_step hook (`clip_generator`): after AMP's unscale, before the update.
   The value is read from the config: Lightning refuses Trainer(gradient_clip_val) under manual
   optimisation, so training/trainer.py does not pass it then;
2. discriminator: D-side GAN loss on the real pair and the detached prediction, one step.
   The discriminator starts learning at step 0 even with a later `start_step`, so it judges
   something when its verdict starts to count.

Step count: under manual optimisation Lightning counts `trainer.global_step` in every
LightningOptimizer.step() call (Lightning issue #17958), so stepping both optimisers through it
would advance global_step by 2 per batch: max_steps would stop after half the batches, and
checkpoint cadence, EMA and the grids' step numbers would count double (measured: max_steps=6
ran 3 batches). The discriminator's step therefore goes to `trainer.strategy.optimizer_step`
(the same precision-plugin path: AMP's grad scaler included), which does not count; global_step
counts generator steps, one per batch, as without the term.

EMA (training/averaging.py, Lightning's WeightAveraging) averages the whole LightningModule, the
discriminator included (a cheap copy of no use: validation and eval only run the generator). It
updates in on_train_batch_end when global_step has moved, so once per batch either way; with
the doubled count its every_n_steps and start_step would have meant half as many batches. The
checkpoint's state_dict holds the averaged networks, current_model_state the raw ones, and a
resume restores the raw discriminator from there, as it does the generator.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from toonclip.losses.adversarial import discriminator_loss, generator_loss


@contextlib.contextmanager
def frozen(module: nn.Module):
    """No gradients into `module`'s parameters while the generator's loss goes through it."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def discriminator_optimizer(discriminator: nn.Module, adv) -> torch.optim.Optimizer:
    """Adam at pix2pix's settings by default (lr 2e-4, betas (0.5, 0.999))."""
    return torch.optim.Adam(
        discriminator.parameters(),
        lr=float(adv.get("lr", 2e-4)),
        betas=tuple(float(b) for b in adv.get("betas", (0.5, 0.999))),
    )


def adversarial_step(
    module, batch: dict, pred: torch.Tensor, total: torch.Tensor, parts: dict, check
) -> tuple[torch.Tensor, dict]:
    """Both optimiser steps of one batch; returns the generator's (total, parts) to log.

    pred: generator(face) with its graph; total: its objective (with the temporal term);
    check(loss, name): raises NonFiniteLossError (or does nothing on skipped steps).
    parts gains adv_g, adv_d (the unweighted G- and D-side GAN losses: train/loss holds
    weight x adv_g) and d_real, d_fake (the mean patch scores).
    """
    face, cartoon = batch["face"], batch["cartoon"]
    disc, kind = module.discriminator, module.adv_loss
    opt_g, opt_d = module.optimizers()

    on = module.global_step >= module.adv_start_step
    if on:
        with frozen(disc):
            g_adv = generator_loss(disc(face, pred), kind)
        total = total + module.adv_weight * g_adv
    check(total, "loss")
    opt_g.zero_grad(set_to_none=True)
    module.manual_backward(total)
    opt_g.step()
    scheduler = module.lr_schedulers()
    if scheduler is not None:
        scheduler.step()

    # One forward over real and generated pairs: spectral norm has no batch statistics, so
    # stacking them changes nothing but the number of calls.
    scores = disc(torch.cat([face, face]), torch.cat([cartoon, pred.detach()]))
    real, fake = scores.chunk(2)
    d_loss = discriminator_loss(real, fake, kind)
    check(d_loss, "discriminator loss")
    opt_d.zero_grad(set_to_none=True)
    module.manual_backward(d_loss)
    # Not opt_d.step(): that would count a second global step per batch (module docstring).
    module.trainer.strategy.optimizer_step(opt_d.optimizer, closure=_no_closure)

    with torch.no_grad():
        # Before start_step the G-side loss is not trained on; the same value, read from the
        # scores D gave the prediction before its own step, keeps the column filled.
        adv_g = g_adv.detach() if on else generator_loss(fake.detach(), kind)
    parts = {
        **parts,
        "adv_g": adv_g,
        "adv_d": d_loss.detach(),
        "d_real": real.detach().float().mean(),
        "d_fake": fake.detach().float().mean(),
    }
    return total, parts


def clip_generator(module, optimizer) -> None:
    """From on_before_optimizer_step: clip the generator's gradients (not the discriminator's:
    spectral norm bounds it already) where automatic optimisation would, after AMP's unscale."""
    if module.clip_value and optimizer is module.optimizers()[0].optimizer:
        module.clip_gradients(optimizer, module.clip_value, module.clip_algorithm)


def _no_closure() -> None:
    """Manual optimisation: the backward has run already."""
