"""`toonclip train`: compose the config, set up the run folder, instantiate, fit, summarise.

Run folder (its name starts with `<arch>__<encoder>`):
    config.yaml  overrides.yaml  summary.json  metrics.csv  val_files.txt  train.log (sweeps)
    checkpoints/{best,last}.ckpt   grids/step_XXXXXX.png, latest.png   tb/ (TensorBoard)
"""

from __future__ import annotations

import csv
import logging
import re
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from toonclip.cli import split_args
from toonclip.config import compose, to_yaml
from toonclip.data.datamodule import PairDataModule
from toonclip.data.pairs import find_pairs
from toonclip.errors import ConfigError
from toonclip.models import count_parameters, resolve_arch, resolve_encoder
from toonclip.training import summary as S
from toonclip.training.callbacks import PreciseBatchNorm, Throughput, ValidationGrid
from toonclip.training.module import ToonModule

log = logging.getLogger(__name__)
# Expected in this design, so not worth a warning on every run: the loss's VGG is frozen in eval
# mode; OnExceptionCheckpoint makes Lightning look for a fault-tolerant resume; tiny data sets.
for _pattern in (
    r".*module\(s\) in eval mode.*",
    r".*was called without a model.*",
    r".*there is no last checkpoint available.*",
    r".*LeafSpec.*",
    r".*overridden `on_after_batch_transfer`.*",
    r".*smaller than the logging interval.*",
    r".*Experiment logs directory .* exists and is not empty.*",
):
    warnings.filterwarnings("ignore", message=_pattern)
# Keys of cfg.trainer that are ours, not lightning.Trainer arguments.
OWN_TRAINER_KEYS = ("val_every_n_steps", "checkpoint_every_n_steps")


def cli(argv: list[str]) -> int:
    positionals, _ = split_args(argv)
    if positionals:
        raise ConfigError(
            f"unexpected argument '{positionals[0]}': options are key=value, e.g. data.size=128"
        )
    cfg, run_dir, ckpt = prepare(argv)
    train(cfg, run_dir, ckpt_path=ckpt, overrides=argv)
    return 0


def _run_name(cfg: DictConfig) -> str:
    name = f"{cfg.model.arch}__{cfg.model.encoder}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name)


def prepare(overrides: list[str]) -> tuple[DictConfig, Path, Path | None]:
    """Resolve the config and run folder; for a resume, the saved overrides come first.

    Names and the data folder are checked here, before a run folder is made for a typo.
    """
    cfg = compose(overrides)
    if cfg.resume in (False, None, "false"):
        _check(cfg)
        name = f"{_run_name(cfg)}__{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = Path(cfg.run_dir) if cfg.run_dir else Path(cfg.runs_root) / name
        ckpts = run_dir / "checkpoints"
        if ckpts.is_dir() and any(ckpts.iterdir()):
            raise ConfigError(
                f"run_dir={run_dir} already holds a run; add resume=true to continue it, "
                "or choose another run_dir"
            )
        return cfg, run_dir, None
    run_dir = Path(cfg.run_dir if cfg.resume is True or cfg.resume == "true" else cfg.resume)
    if cfg.resume is True and not cfg.run_dir:
        raise ConfigError("resume=true needs run_dir=DIR (the run to continue); or pass resume=DIR")
    saved = run_dir / "overrides.yaml"
    last = run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file() or not last.is_file():
        raise ConfigError(
            f"nothing to resume in {run_dir}: it needs overrides.yaml and checkpoints/last.ckpt"
        )
    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "run_dir")]
    cfg = compose(list(yaml.safe_load(saved.read_text()) or []) + keep)
    cfg.run_dir, cfg.resume = str(run_dir), False
    _check(cfg)
    return cfg, run_dir, last


def _check(cfg: DictConfig) -> None:
    resolve_arch(cfg.model.arch)
    resolve_encoder(cfg.model.encoder)
    find_pairs(cfg.data.root, cfg.data.faces_dir, cfg.data.cartoons_dir)


def trainer_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    every = kwargs.pop("val_every_n_steps")
    kwargs.pop("checkpoint_every_n_steps")
    if kwargs.get("max_steps", -1) and kwargs["max_steps"] > 0:
        # Validate on a step count that ignores epoch boundaries (tiny data sets have tiny epochs).
        kwargs["val_check_interval"] = max(1, min(int(every), int(kwargs["max_steps"])))
        kwargs["check_val_every_n_epoch"] = None
    return kwargs


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks=()) -> L.Trainer:
    ckpt_dir = run_dir / "checkpoints"
    callbacks = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor="val/psnr",
            mode="max",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        # last.ckpt every N steps: a killed run loses at most N steps.
        ModelCheckpoint(
            dirpath=ckpt_dir,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=int(cfg.trainer.checkpoint_every_n_steps),
        ),
        OnExceptionCheckpoint(dirpath=ckpt_dir, filename="last"),
        PreciseBatchNorm(cfg.precise_bn.batches),
        ValidationGrid(run_dir / "grids", n_samples=cfg.grid.n_samples, tile=cfg.grid.tile),
        LearningRateMonitor(logging_interval="step"),
        RichProgressBar(),
        *extra_callbacks,
    ]
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


def train(cfg: DictConfig, run_dir: Path, ckpt_path: Path | None = None, overrides=()) -> Path:
    """Fit the configured model; returns the run folder. Writes summary.json even on failure."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    if ckpt_path is None:
        (run_dir / "overrides.yaml").write_text(yaml.safe_dump([str(o) for o in overrides]))
    summary = {
        "name": run_dir.name,
        "arch": cfg.model.arch,
        "encoder": cfg.model.encoder,
        "status": "running",
        "error": None,
        "size": cfg.data.size,
        "run_dir": str(run_dir),
        "started": datetime.now().isoformat(timespec="seconds"),
        "versions": S.versions(),
        "git_commit": S.git_commit(),
    }
    S.write_summary(run_dir / "summary.json", summary)
    throughput = Throughput()
    t0 = time.perf_counter()
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = PairDataModule(**cfg.data)
        datamodule.setup("fit")
        datamodule.write_val_files(run_dir / "val_files.txt")
        module = ToonModule(cfg)
        summary.update(
            params=count_parameters(module.generator),
            gflops=round(S.gflops(module.generator, cfg.summary.flops_size or cfg.data.size), 3),
            weights={
                "encoder": module.generator.weights_record.to_dict(),
                "vgg16": module.loss.weights_record.to_dict()
                if getattr(module.loss, "weights_record", None)
                else None,
            },
        )
        S.write_summary(run_dir / "summary.json", summary)
        if ckpt_path is not None:
            _set_aside_metrics(run_dir)
        trainer = build_trainer(cfg, run_dir, extra_callbacks=[throughput])
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        finally:
            _merge_metrics(run_dir)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        if trainer.interrupted:
            raise KeyboardInterrupt
    except BaseException as exc:
        # Ctrl-C, or SIGTERM from a scheduler (Lightning raises SIGTERMException, a SystemExit).
        stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
        message = (str(exc).splitlines() or [""])[0][:500] or type(exc).__name__
        if stopped:
            message = f"stopped ({type(exc).__name__}); continue with: toonclip train run_dir={run_dir} resume=true"
        summary.update(
            status="interrupted" if stopped else "failed",
            error=message,
            train_time_s=round(time.perf_counter() - t0, 1),
        )
        S.write_summary(run_dir / "summary.json", summary)
        raise
    summary.update(
        status="finished",
        global_step=trainer.global_step,
        best=S.best_metrics(run_dir / "metrics.csv"),
        train_time_s=round(time.perf_counter() - t0, 1),
        train_img_per_s=round(throughput.img_per_s, 2) if throughput.img_per_s else None,
        finished=datetime.now().isoformat(timespec="seconds"),
    )
    S.write_summary(run_dir / "summary.json", summary)
    best = summary["best"]
    print(
        f"\nrun folder: {run_dir}\n  grids:   {run_dir / 'grids'} (latest.png)\n"
        f"  best:    val/psnr {best.get('val/psnr')}  val/ssim {best.get('val/ssim')}\n"
        f"  weights: {run_dir / 'checkpoints' / 'best.ckpt'}",
        file=sys.stderr,
    )
    return run_dir


# Lightning's CSVLogger deletes an existing metrics.csv when it starts, so a resumed run would
# lose the history before the crash: keep it aside and merge it back afterwards.
_BEFORE = "metrics.before_resume.csv"


def _set_aside_metrics(run_dir: Path) -> None:
    if (run_dir / "metrics.csv").is_file():
        (run_dir / "metrics.csv").replace(run_dir / _BEFORE)


def _merge_metrics(run_dir: Path) -> None:
    old_path, new_path = run_dir / _BEFORE, run_dir / "metrics.csv"
    if not old_path.is_file():
        return
    with open(old_path, newline="") as f:
        old = list(csv.DictReader(f))
    new = []
    if new_path.is_file():
        with open(new_path, newline="") as f:
            new = list(csv.DictReader(f))
    first_new = min((int(float(r["step"])) for r in new if r.get("step")), default=float("inf"))
    rows = [r for r in old if r.get("step") and int(float(r["step"])) < first_new] + new
    keys = sorted({k for r in rows for k in r})
    with open(new_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    old_path.unlink()
