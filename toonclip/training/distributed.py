"""Multi-process (DDP) training: one run folder, written by global rank zero, and exit codes
that say when any rank failed.

Every rank runs `toonclip train` from the top. Lightning's own launcher (trainer.devices=N on
one machine) starts ranks 1..N-1 when `trainer.fit` starts, by running the same command line
again with LOCAL_RANK set; Slurm's srun and torchrun start every rank themselves. So:

- every rank must use the same run folder: rank zero hands its folder to the children it starts
  (environment variable `RUN_DIR_ENV`); ranks started by srun all derive it from SLURM_JOB_ID;
- only global rank zero writes files (config, overrides, summary, val_files, the metrics merge;
  Lightning keeps checkpoints, loggers and grids on rank zero already);
- rank zero waits for the children it started and fails when one of them did, and stops them
  when it fails itself (otherwise they would wait in a collective until its timeout).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from toonclip.errors import ToonclipError

log = logging.getLogger(__name__)

RUN_DIR_ENV = "TOONCLIP_DDP_RUN_DIR"


def launched_child_run_dir() -> Path | None:
    """The run folder rank zero handed to this process, when Lightning's launcher started it."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    return None


def scheduler_run_suffix() -> str | None:
    """A run-folder suffix every rank computes alike when a scheduler started all the ranks."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and os.environ.get("SLURM_JOB_ID"):
        return f"slurm{os.environ['SLURM_JOB_ID']}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    return None


def is_rank_zero_before_trainer() -> bool:
    """Rank zero as far as the environment tells before a Trainer exists (RANK, LOCAL_RANK,
    SLURM_PROCID); `trainer.is_global_zero` is the answer once it does."""
    return rank_zero_only.rank == 0


@contextlib.contextmanager
def share_run_dir(trainer: L.Trainer, run_dir: Path):
    """While fit runs, children that Lightning starts inherit `run_dir` through the environment."""
    if trainer.world_size == 1:
        yield
        return
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        yield
    finally:
        os.environ.pop(RUN_DIR_ENV, None)


def _children(trainer: L.Trainer) -> list[subprocess.Popen]:
    return list(getattr(trainer.strategy.launcher, "procs", None) or [])


class RankFailedError(ToonclipError):
    """Another DDP rank failed (its own error is in the command's output)."""


def _observer() -> threading.Thread | None:
    """The thread in which Lightning's launcher watches the children it started (it SIGKILLs
    them all and this process when one fails). Private to Lightning: None when not found."""
    return next(
        (t for t in threading.enumerate() if type(t).__name__ == "_ChildProcessObserver"), None
    )


class ChildWatch(L.Callback):
    """On rank zero of a run whose other ranks Lightning's launcher started: when one of them
    fails during fit, the observer SIGKILLs this process and no exception handler runs, so
    summary.json would still say "running"; `on_failure(message)` is called just before."""

    def __init__(self, on_failure):
        self.on_failure = on_failure

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        observer = _observer()  # started by the launcher, before any hook runs
        if (
            observer is None
            or not trainer.is_global_zero
            or not hasattr(observer, "_terminate_all")
        ):
            return
        kill = observer._terminate_all

        def record_then_kill() -> None:
            failed = [
                f"rank {rank} exited with code {proc.returncode}"
                for rank, proc in enumerate(_children(trainer), start=1)
                if proc.returncode
            ]
            with contextlib.suppress(Exception):
                self.on_failure("; ".join(failed) or "a rank failed")
            kill()

        observer._terminate_all = record_then_kill


def raise_if_children_failed(trainer: L.Trainer, timeout_s: float = 300) -> None:
    """Wait for the ranks this process started; raise RankFailedError when any of them failed."""
    children = _children(trainer)
    if not children:
        return
    # Lightning's observer thread SIGKILLs this process when a child fails; from here on this
    # function waits for them instead and fails with a message, so take its next check away.
    observer = _observer()
    if observer is not None:
        observer._run = lambda: True
    failures = []
    for rank, proc in enumerate(children, start=1):
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            failures.append(f"rank {rank} did not exit {timeout_s:.0f} s after training; killed")
            continue
        if code:
            failures.append(f"rank {rank} exited with code {code} (its error is printed above)")
    if failures:
        raise RankFailedError("; ".join(failures))


def stop_children(trainer: L.Trainer | None, grace_s: float = 3.0) -> str | None:
    """Kill the ranks this process started (after it failed, they would wait for it forever).

    Returns which of them had failed already (their failure is often the cause of this one:
    a collective then fails with "Connection closed by peer"), else None.
    """
    children = _children(trainer) if trainer is not None else []
    deadline = time.monotonic() + (grace_s if children else 0)
    while time.monotonic() < deadline and not any(p.poll() for p in children):
        time.sleep(0.1)  # a rank that failed first may still be exiting
    failed = []
    for rank, proc in enumerate(children, start=1):
        if proc.poll():
            failed.append(f"rank {rank} exited with code {proc.returncode}")
        elif proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
    return "; ".join(failed) or None


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """OnExceptionCheckpoint (last.ckpt on any exception) that never waits for other ranks.

    Lightning's `trainer.save_checkpoint` ends with a barrier; when one rank fails, the others are
    not at it, and the failing rank would hang there instead of exiting. DDP keeps the weights
    equal on every rank, so rank zero writes the file alone and the other ranks skip it.

    Nothing is written at or below `floor_step` (the step of the checkpoint a resume started
    from; 0 for a new run): a run that fails before it trains must not replace a good last.ckpt.
    """

    def __init__(self, dirpath, filename: str = "last", floor_step: int = 0):
        super().__init__(dirpath=dirpath, filename=filename)
        self.floor_step = int(floor_step)

    def on_exception(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step <= self.floor_step:
            log.warning(
                "not writing %s: step %d is not past the step on disk (%d)",
                self.ckpt_path,
                trainer.global_step,
                self.floor_step,
            )
            return
        if trainer.world_size == 1:
            super().on_exception(trainer, *args, **kwargs)
        elif trainer.is_global_zero:
            # Writing, not loading: the full training state (optimiser included), as
            # trainer.save_checkpoint would write it, minus its barrier.
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            trainer.strategy.save_checkpoint(checkpoint, self.ckpt_path)


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint (read without running code)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable checkpoint"
        raise ToonclipError(
            f"{path}: cannot read its step ({type(exc).__name__}); it is not a toonclip checkpoint"
        ) from None
    return int(ckpt.get("global_step", 0))
