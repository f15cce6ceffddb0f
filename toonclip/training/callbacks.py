"""Callbacks: validation grids (PNG + TensorBoard), training throughput, a final validation,
precise BatchNorm statistics, the model summary printed at the start of a fit."""

from __future__ import annotations

import shutil
import time
from collections import deque
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from toonclip.models.cost import count_gflops_direct
from toonclip.visual import make_grid, save_png, to_uint8


class GeneratorSummary(RichModelSummary):
    """Lightning's model summary, its FLOPs those of the generator on one (1, 3, size, size)
    image, counted as summary.json counts them (models/cost.py); other rows read "-".

    Lightning counts FLOPs only through `example_input_array`, which the module leaves unset:
    Lightning would pass it through on_after_batch_transfer, which expects a batch of pairs,
    and a compiled generator would compile once more for its shape. Without it every row and
    the total read 0."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        generator = getattr(pl_module, "generator", None)
        if not self._max_depth or generator is None:
            return super().on_fit_start(trainer, pl_module)
        summary = self._summary(trainer, pl_module)
        if not hasattr(summary, "total_flops"):  # a Lightning without a FLOPs column
            return super().on_fit_start(trainer, pl_module)
        data = summary._get_summary_data()
        if not trainer.is_global_zero:
            return
        flops = round(count_gflops_direct(generator, self.size) * 1e9)
        names = dict(data).get("Name", [])
        data = [
            (col, [get_human_readable_count(flops) if n == "generator" else "-" for n in names])
            if col == "FLOPs"
            else (col, values)
            for col, values in data
        ]
        self.summarize(
            data,
            summary.total_parameters,
            summary.trainable_parameters,
            summary.model_size,
            summary.total_training_modes,
            total_flops=flops,
            **self._summarize_kwargs,
        )


class ValidationGrid(L.Callback):
    """After every validation, saves grids/step_XXXXXX.png: rows are the same fixed validation
    faces (face | prediction | target, or the module's own `grid_columns`, e.g. face | teacher |
    student | target when distilling); also grids/latest.png and a TensorBoard image."""

    def __init__(self, out_dir: str | Path, n_samples: int = 6, tile: int = 128):
        self.out_dir = Path(out_dir)
        self.n_samples, self.tile = n_samples, tile
        self._batch: dict | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if self._batch is None:
            self._batch = trainer.datamodule.grid_batch(self.n_samples)
        batch = pl_module.on_after_batch_transfer(
            {k: v.to(pl_module.device) for k, v in self._batch.items()}, 0
        )
        columns = pl_module.grid_columns(batch)
        images = [to_uint8(t) for _, t in columns]
        rows = [[col[i] for col in images] for i in range(len(images[0]))]
        # The trained model's column says which step drew it.
        step = trainer.global_step
        headers = [
            f"{name}\nstep {step}" if name in ("prediction", "student") else name
            for name, _ in columns
        ]
        grid = make_grid(rows, headers=headers, tile=self.tile)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"step_{trainer.global_step:06d}.png"
        save_png(grid, path)
        shutil.copyfile(path, self.out_dir / "latest.png")
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image(
                    "val/grid", grid, trainer.global_step, dataformats="HWC"
                )


class Throughput(L.Callback):
    """Training images per second over optimiser steps (data wait and validation excluded),
    skipping the first `warmup` steps of this process (allocator and kernel warm-up).

    `img_per_s` and `images_trained` are this rank's; multiply by the world size for all ranks
    (every rank runs the same number of equal batches).

    On CUDA a step is timed by two CUDA events recorded in the stream around it and read once
    they have completed (`Event.query`, which does not wait). Timing by
    `torch.cuda.synchronize()` would make the host wait for the GPU twice a step: the GPU then
    idles while the host launches the next step's kernels, which slows the very run it measures.
    """

    def __init__(self, warmup: int = 3):
        self.warmup = warmup
        self.images = 0  # timed steps only
        self.images_trained = 0  # every step of this fit, warm-up included
        self.seconds = 0.0
        self._seen = 0
        self._start: float | torch.cuda.Event = 0.0
        self._pending: deque[tuple[torch.cuda.Event, torch.cuda.Event, int]] = deque()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += 1
        n = batch["face"].shape[0]
        self.images_trained += n
        timed = self._seen > self.warmup
        if isinstance(self._start, torch.cuda.Event):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            if timed:
                self._pending.append((self._start, end, n))
            self._read_events(wait=False)
        elif timed:
            self.seconds += time.perf_counter() - self._start
            self.images += n

    def _read_events(self, wait: bool) -> None:
        while self._pending and (wait or self._pending[0][1].query()):
            start, end, n = self._pending.popleft()
            end.synchronize()  # already complete unless `wait`
            self.seconds += start.elapsed_time(end) / 1000.0
            self.images += n

    @property
    def img_per_s(self) -> float | None:
        self._read_events(wait=True)
        return self.images / self.seconds if self.seconds > 0 else None


class FinalValidation(L.Callback):
    """Make the last training step a validation step, so every finished run ends with one.

    Validation runs every `trainer.val_every_n_steps`; when max_steps is not a multiple of it, or
    max_epochs ends the run, the last weights would go unscored. Setting `trainer.should_stop` on
    the last step makes Lightning validate right there, inside fit (the same path as early
    stopping; max_time's Timer stops the same way), so the grid, metrics.csv, best.ckpt and the
    summary's `final` all see it. When the last step is a validation step anyway, it runs once.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last_step = 0 < trainer.max_steps <= trainer.global_step
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= (
            trainer.current_epoch + 1
        )
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if last_step or (last_epoch and last_batch):
            trainer.should_stop = True


class PreciseBatchNorm(L.Callback):
    """Re-estimate BatchNorm running statistics on `batches` training batches before every
    validation (and so before every checkpoint and export).

    With small batches and fast-moving weights (random-init encoders, lr 5e-4) the running
    averages lag the weights, and eval-mode predictions blow out on some faces: measured here,
    a 300-step run gave 7 dB on a face that scored 14 dB with batch statistics. A no-grad pass
    over a few training batches with a cumulative average (momentum=None) fixes that.
    """

    def __init__(self, batches: int = 16):
        self.batches = int(batches)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batches <= 0 or trainer.sanity_checking:
            return
        recalibrate_batchnorm(pl_module, trainer.datamodule.train_dataloader(), self.batches)


def recalibrate_batchnorm(pl_module: L.LightningModule, loader, batches: int) -> None:
    """Cumulative BN statistics of `pl_module.generator` over `batches` batches of `loader`."""
    norms = [
        m
        for m in pl_module.generator.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    if not norms:
        return
    saved = [(m, m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the passes below
        m.train()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            batch = pl_module.on_after_batch_transfer(
                {k: v.to(pl_module.device) for k, v in batch.items() if k in ("face", "cartoon")}, 0
            )
            pl_module(batch["face"])
    for m, momentum, training in saved:
        m.momentum = momentum
        m.train(training)
