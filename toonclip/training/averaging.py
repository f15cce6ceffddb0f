"""EMA of the generator's weights, through Lightning's WeightAveraging callback.

Validation, grids, checkpoints (and so eval, predict and export) see the averaged weights;
the optimiser keeps training the raw ones, which a resume restores from the checkpoint.
"""

from __future__ import annotations

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
    Updates every `every_n_steps` optimiser steps, from step `start_step` on."""

    def __init__(self, decay: float = 0.999, every_n_steps: int = 1, start_step: int = 0):
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"ema.decay={decay}: must be between 0 and 1, e.g. 0.999")
        if int(every_n_steps) < 1:
            raise ConfigError(f"ema.every_n_steps={every_n_steps}: must be >= 1")
        super().__init__(use_buffers=True, multi_avg_fn=ema_multi_avg_fn(float(decay)))
        self.every_n_steps, self.start_step = int(every_n_steps), int(start_step)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (
            step_idx is not None
            and step_idx >= self.start_step
            and step_idx % self.every_n_steps == 0
        )


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
