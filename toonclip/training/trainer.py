"""The lightning.Trainer of a run: its keyword arguments from cfg.trainer, its callbacks (in an
order that is a contract, see build_callbacks) and its loggers (CSV + TensorBoard in the run
folder). run.py calls build_trainer; the rest of the run (folder, summary, resume) lives there.
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from toonclip.training import distributed as D
from toonclip.training.averaging import recipe_callbacks
from toonclip.training.callbacks import (
    FinalValidation,
    GeneratorSummary,
    PreciseBatchNorm,
    ValidationGrid,
)

# Expected in this design, so not worth a warning on every run: the loss's VGG is frozen in eval
# mode; OnExceptionCheckpoint makes Lightning look for a fault-tolerant resume; tiny data sets;
# the adversarial term's manual optimisation checkpoints the state after the step, as automatic
# optimisation does (resume continues with the next batch); configure_model only sets the memory
# format and compiles, it shards nothing, so WeightAveraging's sharding warning does not apply.
for _pattern in (
    r".*module\(s\) in eval mode.*",
    r".*was called without a model.*",
    r".*there is no last checkpoint available.*",
    r".*LeafSpec.*",
    r".*overridden `on_after_batch_transfer`.*",
    r".*smaller than the logging interval.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*no pre-optimization state was saved.*",
    r".*WeightAveraging doesn't support sharding.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


class _LightningNotes(logging.Filter):
    """Lightning notes that say nothing about a toonclip run, dropped from its console:
    "`weights_only` was not set, defaulting to `False`" on every trainer.save_checkpoint (the
    full, resumable checkpoint is what train() wants; every load in toonclip uses
    torch.load(weights_only=True)); an advertisement for a cloud logger at every fit; and
    "already configured with model summary callbacks" (GeneratorSummary is ours on purpose)."""

    NOTES = (
        "`weights_only` was not set",
        "try installing [litlogger]",
        "already configured with model summary callbacks",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(note in message for note in self.NOTES)


for _name in (
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
    "lightning.pytorch.utilities.rank_zero",
):
    logging.getLogger(_name).addFilter(_LightningNotes())

# Keys of cfg.trainer that are ours, not lightning.Trainer arguments.
OWN_TRAINER_KEYS = ("val_every_n_steps", "checkpoint_every_n_steps", "checkpoint_every_minutes")


def trainer_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    every = kwargs.pop("val_every_n_steps")
    for key in OWN_TRAINER_KEYS[1:]:
        kwargs.pop(key, None)
    if OmegaConf.select(cfg, "adversarial.weight", default=0):
        # Manual optimisation, where Lightning refuses Trainer(gradient_clip_val): the module
        # clips the generator by the same config values itself (training/adversarial.py).
        for key in ("gradient_clip_val", "gradient_clip_algorithm"):
            kwargs.pop(key, None)
    if kwargs.get("max_steps", -1) and kwargs["max_steps"] > 0:
        # Validate on a step count that ignores epoch boundaries (tiny data sets have tiny epochs).
        kwargs["val_check_interval"] = max(1, min(int(every), int(kwargs["max_steps"])))
        kwargs["check_val_every_n_epoch"] = None
    return kwargs


def build_callbacks(
    cfg: DictConfig, run_dir: Path, extra_callbacks=(), floor_step: int = 0
) -> list[L.Callback]:
    """The order is a contract: hooks of one kind run in list order. The recipe callbacks (EMA)
    sit after ValidationGrid and before PreciseBatchNorm: at validation start they swap their
    weights in before BatchNorm statistics are re-estimated, at validation end they swap them
    back after the grid is drawn. (Lightning moves checkpoint callbacks to the end by itself.)"""
    ckpt_dir = run_dir / "checkpoints"
    return [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor="val/psnr",
            mode="max",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        # last.ckpt every N steps: a killed run loses at most N steps. This and the timed
        # checkpoint share last.ckpt (newest wins): with Lightning's version counter the second
        # writer went to last-v1.ckpt, which resume never reads.
        ModelCheckpoint(
            dirpath=ckpt_dir,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=int(cfg.trainer.checkpoint_every_n_steps),
            enable_version_counter=False,
        ),
        *_timed_checkpoint(
            ckpt_dir,
            cfg.trainer.get("checkpoint_every_minutes"),
            cfg.trainer.get("log_every_n_steps") or 10,
        ),
        D.ExceptionCheckpoint(dirpath=ckpt_dir, filename="last", floor_step=floor_step),
        FinalValidation(),
        ValidationGrid(run_dir / "grids", n_samples=cfg.grid.n_samples, tile=cfg.grid.tile),
        *recipe_callbacks(cfg),
        PreciseBatchNorm(cfg.precise_bn.batches),
        LearningRateMonitor(logging_interval="step"),
        LoggedStepProgressBar(),
        # The summary's FLOPs at the size summary.json counts them; none if it is switched off.
        *(
            [GeneratorSummary(OmegaConf.select(cfg, "summary.flops_size") or cfg.data.size)]
            if cfg.trainer.get("enable_model_summary", True)
            else []
        ),
        *extra_callbacks,
    ]


class LoggedStepProgressBar(RichProgressBar):
    """Lightning's rich bar, showing the training loss as of the last logging step
    (`trainer.log_every_n_steps`).

    A metric logged with `prog_bar=True` is read into Python by Lightning after every step
    (`_LoggerConnector.on_batch_end`), which on a GPU makes the host wait for the step to finish
    before it may launch the next one: a sync per step. So the module logs `train/loss` without
    `prog_bar`, and the bar reads it here on logging steps, which read it anyway."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._loss: float | None = None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        if trainer.training and trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            loss = trainer.callback_metrics.get("train/loss")
            self._loss = None if loss is None else float(loss)
        if self._loss is not None:
            items["train/loss"] = f"{self._loss:.4f}"
        return items

    def _get_train_description(self, current_epoch: int) -> str:
        # Runs end on steps or time (max_epochs -1); Lightning would print "Epoch 1/-2" then.
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)


class TimedCheckpoint(ModelCheckpoint):
    """last.ckpt every `train_time_interval`, with the clock looked at every `check_every_n_steps`
    steps. Lightning looks on every step and, under DDP, broadcasts rank zero's answer to all
    ranks each time (a collective and a host sync per step); minutes do not need that."""

    def __init__(self, check_every_n_steps: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.check_every_n_steps = max(1, int(check_every_n_steps))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.check_every_n_steps == 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def _timed_checkpoint(ckpt_dir: Path, minutes, check_every_n_steps: int) -> list[ModelCheckpoint]:
    """last.ckpt also every `minutes` of training: a slow CPU run (or a kill -9 before the first
    step cadence) loses minutes at most, whatever the step cadence."""
    if not minutes:
        return []
    return [
        TimedCheckpoint(
            check_every_n_steps=check_every_n_steps,
            dirpath=ckpt_dir,
            save_top_k=0,
            save_last=True,
            train_time_interval=timedelta(minutes=float(minutes)),
            enable_version_counter=False,
        )
    ]


def build_trainer(
    cfg: DictConfig, run_dir: Path, extra_callbacks=(), floor_step: int = 0
) -> L.Trainer:
    callbacks = build_callbacks(cfg, run_dir, extra_callbacks, floor_step)
    loggers = [
        # Flushed as often as last.ckpt is written, so a crash loses no logged history.
        CSVLogger(
            save_dir=run_dir,
            name="",
            version="",
            flush_logs_every_n_steps=int(cfg.trainer.checkpoint_every_n_steps),
        ),
        TensorBoardLogger(save_dir=run_dir, name="tb", version="", default_hp_metric=False),
    ]
    return L.Trainer(
        default_root_dir=run_dir, callbacks=callbacks, logger=loggers, **trainer_kwargs(cfg)
    )
