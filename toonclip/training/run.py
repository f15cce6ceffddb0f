"""`toonclip train`: compose the config, set up the run folder, instantiate, fit, summarise.

Run folder (its name starts with `<arch>__<encoder>`):
    config.yaml  overrides.yaml  summary.json  metrics.csv  val_files.txt  train.log (sweeps)
    checkpoints/{best,last}.ckpt   grids/step_XXXXXX.png, latest.png   tb/ (TensorBoard)

The Trainer itself (arguments, callbacks, loggers) is built in trainer.py.

Under DDP every rank runs this module; only global rank zero writes the folder (distributed.py).
"""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from toonclip.config import compose, to_yaml
from toonclip.data.datamodule import PairDataModule
from toonclip.data.pairs import find_pairs
from toonclip.distill.module import DistillModule
from toonclip.errors import ConfigError
from toonclip.models import generator_from_config, resolve_arch, resolve_encoder
from toonclip.training import distributed as D
from toonclip.training import metrics_merge
from toonclip.training import summary as S
from toonclip.training import validate as V
from toonclip.training.callbacks import Throughput
from toonclip.training.module import ToonModule
from toonclip.training.resume import check_resume
from toonclip.training.trainer import build_trainer
from toonclip.training.val_history import val_results


def cli(argv: list[str]) -> int:
    """After entry.cli has composed the command line (its keys are valid)."""
    argv = teacher_defaults(argv)
    cfg, run_dir, ckpt = prepare(argv)
    try:
        train(cfg, run_dir, ckpt_path=ckpt, overrides=argv)
    except (KeyboardInterrupt, SIGTERMException) as exc:
        # A stopped run is not a finished one: schedulers and sweeps read the exit code.
        # 130 = 128 + SIGINT (Ctrl-C), 143 = 128 + SIGTERM, as a shell reports them.
        name, code = ("SIGTERM", 143) if isinstance(exc, SIGTERMException) else ("Ctrl-C", 130)
        print(
            f"stopped ({name}) at the last checkpoint; continue with: "
            f"toonclip train run_dir={run_dir} resume=true",
            file=sys.stderr,
        )
        return code
    return 0


def teacher_defaults(argv: list[str]) -> list[str]:
    """For a distillation run, the teacher's data.root and data.size unless given: the student
    learns the teacher's cartoons at the scale the teacher drew them."""
    keys = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}
    teacher = next((a.split("=", 1)[1] for a in argv if a.startswith("distill.teacher=")), None)
    if not teacher or keys & {"resume"} or not Path(teacher).exists():
        return argv  # no teacher, a resume (its saved overrides hold them), or _check says why
    from toonclip.distill.teacher import teacher_config

    tcfg = teacher_config(teacher)
    extra = [f"data.{k}={tcfg.data[k]}" for k in ("root", "size") if f"data.{k}" not in keys]
    return extra + list(argv)


def _run_name(cfg: DictConfig) -> str:
    name = f"{cfg.model.arch}__{cfg.model.encoder}"
    width = float(cfg.model.get("decoder_width", 1.0))
    if width != 1.0:
        name += f"__w{width:g}"
    if cfg.get("distill"):
        name += "__distill"
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name)


def prepare(overrides: list[str]) -> tuple[DictConfig, Path, Path | None]:
    """Resolve the config and run folder; for a resume, the saved overrides come first.

    Names and the data folder are checked here, before a run folder is made for a typo.
    """
    cfg = compose(overrides)
    if cfg.resume in (False, None, "false"):
        _check(cfg)
        shared = D.launched_child_run_dir()
        if shared is not None:  # a DDP rank started by rank zero: its folder, already checked
            return cfg, shared, None
        suffix = D.scheduler_run_suffix() or f"{datetime.now():%Y%m%d-%H%M%S}"
        name = f"{_run_name(cfg)}__{suffix}"
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
    check_resume(cfg, run_dir)
    return cfg, run_dir, last


def _check(cfg: DictConfig) -> None:
    V.check_train_values(cfg)
    resolve_arch(cfg.model.arch), resolve_encoder(cfg.model.encoder)
    # A pair smp rejects fails here (one line from the factory), before any data is decoded.
    generator_from_config(cfg.model, weights="none")
    find_pairs(cfg.data.root, cfg.data.faces_dir, cfg.data.cartoons_dir)


def train(cfg: DictConfig, run_dir: Path, ckpt_path: Path | None = None, overrides=()) -> Path:
    """Fit the configured model; returns the run folder. Writes summary.json even on failure.

    Every DDP rank runs this; only global rank zero writes files and prints the result lines.
    """
    cfg.run_dir = str(run_dir)
    lead = D.is_rank_zero_before_trainer()
    summary = S.start_record(cfg, run_dir)
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        if ckpt_path is None:
            (run_dir / "overrides.yaml").write_text(yaml.safe_dump([str(o) for o in overrides]))
        S.write_summary(run_dir / "summary.json", summary)
    throughput, trainer, fit_wall_s = Throughput(), None, None
    t0 = time.perf_counter()
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = PairDataModule(**cfg.data)
        datamodule.setup("fit")
        module = DistillModule(cfg) if cfg.get("distill") else ToonModule(cfg)
        if lead:
            datamodule.write_val_files(run_dir / "val_files.txt")
            summary.update(S.model_record(module, cfg), skipped_pairs=datamodule.skipped)
            S.write_summary(run_dir / "summary.json", summary)
        watch = D.ChildWatch(
            lambda cause: S.record_failure(
                summary, D.RankFailedError(cause), run_dir, time.perf_counter() - t0
            )
        )
        # A checkpoint older than the one being resumed is never written (a failed resume would
        # otherwise replace last.ckpt with step 0), nor a step-0 one for a run that never trained.
        floor = D.checkpoint_step(ckpt_path) if ckpt_path is not None else 0
        trainer = build_trainer(cfg, run_dir, [throughput, watch], floor_step=floor)
        lead = trainer.is_global_zero
        if ckpt_path is not None and lead:
            metrics_merge.set_aside(run_dir)
        fit_start = time.perf_counter()
        try:
            with D.share_run_dir(trainer, run_dir):
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except SystemExit as exc:
            if isinstance(exc, SIGTERMException) or exc.code != 1:
                raise
            # Lightning turns Ctrl-C inside fit into sys.exit(1) after its own clean-up.
            raise KeyboardInterrupt from None
        finally:
            fit_wall_s = time.perf_counter() - fit_start
            if lead:
                metrics_merge.merge_back(run_dir)
        if trainer.global_step > floor or ckpt_path is None:
            trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # all ranks: a barrier
        if trainer.interrupted:
            raise KeyboardInterrupt
        if lead:
            D.raise_if_children_failed(trainer)
    except BaseException as exc:
        cause = D.stop_children(trainer)
        if lead:
            S.record_failure(summary, exc, run_dir, time.perf_counter() - t0, cause=cause)
        raise
    if not lead:
        return run_dir
    summary.update(
        status="finished",
        global_step=trainer.global_step,
        world_size=trainer.world_size,
        steps_per_epoch=trainer.num_training_batches,
        **val_results(run_dir / "metrics.csv"),
        train_time_s=round(time.perf_counter() - t0, 1),
        **S.speed(throughput, trainer.world_size, fit_wall_s),
        finished=datetime.now().isoformat(timespec="seconds"),
    )
    S.write_summary(run_dir / "summary.json", summary)
    print(S.result_lines(summary), file=sys.stderr)
    return run_dir
