"""EMA of the generator's weights, through Lightning's WeightAveraging callback.

Validation, grids, checkpoints (and so eval, predict and export) see the averaged weights;
the optimiser keeps training the raw ones, which a resume restores from the checkpoint.
"""

from __future__ import annotations

import itertools

import torch
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig

from toonclip.errors import ConfigError


def ema_multi_avg_fn(decay: float, warmup: float = 10.0):
    """Exponential moving average with timm-style warm-up for AveragedModel(multi_avg_fn=...).

    The decay used for update n is min(decay, (1 + n) / (warmup + n)): early on the average
    follows the weights closely (a fixed 0.999 would still be 74% the random init after 300
    steps), later it settles to `decay`. Integer buffers (BatchNorm's num_batches_tracked) are
    copied, not averaged.
    """

    def fn(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (warmup + n))
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - d)
        for a, c in zip(averaged, current, strict=True):
            if not a.is_floating_point():
                a.copy_(c)

    return fn


class EMAWeights(WeightAveraging):
    """WeightAveraging with an EMA (decay, warm-up) of parameters and buffers (BatchNorm
    statistics included: the running averages of the averaged weights then move smoothly too).
    Updates every `every_n_steps` optimiser steps, from step `start_step` on.

    The update is Lightning's, minus its host reads: `AveragedModel.update_parameters` tests
    its device-side counter `n_averaged` in two Python `if`s, and hands it to the decay's
    warm-up once per dtype group: four GPU -> host syncs on every training step (measured by
    tests/test_host_syncs.py). Here the count is mirrored in a
    Python int (`updates`, read back from `n_averaged` once when a checkpoint is loaded), and
    `n_averaged` is still incremented on the device so checkpoints keep it.
    """

    def __init__(self, decay: float = 0.999, every_n_steps: int = 1, start_step: int = 0):
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"ema.decay={decay}: must be between 0 and 1, e.g. 0.999")
        if int(every_n_steps) < 1:
            raise ConfigError(f"ema.every_n_steps={every_n_steps}: must be >= 1")
        self._avg_fn = ema_multi_avg_fn(float(decay))
        super().__init__(use_buffers=True, multi_avg_fn=self._avg_fn)
        self.every_n_steps, self.start_step = int(every_n_steps), int(start_step)
        self.updates = 0

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (
            step_idx is not None
            and step_idx >= self.start_step
            and step_idx % self.every_n_steps == 0
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step_idx = trainer.global_step - 1  # as WeightAveraging: zero-based optimiser step
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx):
            self.update(pl_module)
            self._latest_update_step = trainer.global_step

    @torch.no_grad()
    def update(self, pl_module: torch.nn.Module) -> None:
        """One EMA update of the averaged copy towards `pl_module`, without host syncs."""
        average = self._average_model
        averaged = [
            t.detach()
            for t in itertools.chain(average.module.parameters(), average.module.buffers())
        ]
        current = [t.detach() for t in itertools.chain(pl_module.parameters(), pl_module.buffers())]
        if self.updates == 0:
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
        else:
            self._avg_fn(averaged, current, self.updates)
        average.n_averaged += 1
        self.updates += 1

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is not None:
            self.updates = int(self._average_model.n_averaged)  # once, at resume


def recipe_callbacks(cfg: DictConfig) -> list:
    """Callbacks that the training recipe adds: EMA when cfg.ema.decay is set (null: off).

    build_trainer places them after ValidationGrid and before PreciseBatchNorm, so the averaged
    weights are swapped in before BN re-estimation and swapped out after the grid is drawn.
    """
    ema = cfg.get("ema") or {}
    if not ema or ema.get("decay") in (None, 0, 0.0):
        return []
    return [
        EMAWeights(
            decay=ema["decay"],
            every_n_steps=ema.get("every_n_steps", 1),
            start_step=ema.get("start_step", 0),
        )
    ]
