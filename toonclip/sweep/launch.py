"""Launchers: how the members' training commands get run.

- `sequential`: one after another in this process's machine (default).
- `parallel`: `workers` at a time, each its own process (threads only wait on them).
- `submitit_local` / `slurm`: through submitit's AutoExecutor, one job per member, the same
  code path for both (`cluster="local"` or `cluster="slurm"`); each job runs `run_member`.

Every launcher calls `on_start(task, job_id)` when a member starts and
`on_end(task, exit_code, job_error)` when it stops; the caller turns that into the index.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toonclip.errors import ConfigError, ToonclipError
from toonclip.sweep.job import run_member

LAUNCHERS = ("sequential", "parallel", "submitit_local", "slurm")
# AutoExecutor's shared parameters; any other `slurm.X` becomes `slurm_X` (SlurmExecutor's own).
_GENERIC = ("timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node")


@dataclass(frozen=True)
class Task:
    name: str
    command: list[str]
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class LauncherConfig:
    name: str = "sequential"
    workers: int | None = None  # parallel: default cpu count; submitit_local: 1; slurm: no limit
    timeout_min: int | None = None  # per job, submitit only (default 24 h local, 4 h slurm)
    slurm: dict[str, Any] = field(default_factory=dict)
    poll_s: float = 1.0

    def __post_init__(self):
        if self.name not in LAUNCHERS:
            raise ConfigError(
                f"launcher={self.name} is not known; use one of {', '.join(LAUNCHERS)}"
            )
        if self.workers is not None and int(self.workers) < 1:
            raise ConfigError(f"workers={self.workers}: use a whole number >= 1")


def launcher_config(section: dict[str, Any], options: dict[str, Any]) -> LauncherConfig:
    """Merge the sweep file's `launcher:` section with command-line options (which win).

    Options: `launcher=NAME`, `workers=N`, `timeout_min=N`, `poll_s=S`, `slurm.KEY=VALUE`.
    """
    merged = {**section, **{k: v for k, v in options.items() if not k.startswith("slurm.")}}
    if "launcher" in merged:
        merged["name"] = merged.pop("launcher")
    slurm = dict(merged.pop("slurm", None) or {})
    slurm.update({k.split(".", 1)[1]: v for k, v in options.items() if k.startswith("slurm.")})
    unknown = [k for k in merged if k not in ("name", "workers", "timeout_min", "poll_s")]
    if unknown:
        raise ConfigError(
            f"unknown launcher option '{unknown[0]}'; valid: launcher, workers, timeout_min, "
            "poll_s, slurm.KEY (e.g. slurm.partition)"
        )
    try:
        for key in ("workers", "timeout_min"):
            if merged.get(key) is not None:
                merged[key] = int(merged[key])
        if merged.get("poll_s") is not None:
            merged["poll_s"] = float(merged["poll_s"])
    except ValueError as exc:
        raise ConfigError(f"launcher option: {exc}; use a number") from exc
    return LauncherConfig(slurm=slurm, **merged)


OnStart = Callable[[Task, "str | None"], None]
OnEnd = Callable[[Task, "int | None", "str | None"], None]


def launch(tasks: list[Task], cfg: LauncherConfig, folder: Path, on_start: OnStart, on_end: OnEnd):
    """Run every task with the configured launcher; returns when all have stopped."""
    if not tasks:
        return
    if cfg.name == "sequential":
        for task in tasks:
            _run_here(task, on_start, on_end)
    elif cfg.name == "parallel":
        workers = int(cfg.workers or os.cpu_count() or 1)
        tasks = [_share_cpus(t, workers) for t in tasks]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first exception of a worker (a bug, not a failed member).
            list(pool.map(lambda t: _run_here(t, on_start, on_end), tasks))
    else:
        _run_submitit(tasks, cfg, folder, on_start, on_end)


def _run_here(task: Task, on_start: OnStart, on_end: OnEnd) -> None:
    on_start(task, None)
    code = run_member(task.command, str(task.run_dir), task.env)
    on_end(task, code, None)


def _share_cpus(task: Task, workers: int) -> Task:
    # N trainings each using every core thrash the CPU; give each its share unless the user chose.
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return task
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return Task(task.name, task.command, task.run_dir, {**task.env, "OMP_NUM_THREADS": threads})


@contextlib.contextmanager
def _environ(extra: dict[str, str]):
    """Temporarily extend os.environ: submitit hands the submitting environment to its jobs."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_executor(cfg: LauncherConfig, folder: Path):
    """A submitit AutoExecutor for `submitit_local` or `slurm`, with the job parameters set."""
    import submitit

    cluster = "local" if cfg.name == "submitit_local" else "slurm"
    try:
        executor = submitit.AutoExecutor(folder=folder / ".submitit", cluster=cluster)
    except RuntimeError as exc:  # SlurmExecutor checks for `srun` up front
        raise ConfigError(
            f"launcher={cfg.name}: {exc} Run the sweep on the cluster's login node, or use "
            "launcher=submitit_local to run the same jobs on this machine"
        ) from exc
    default_timeout = 24 * 60 if cluster == "local" else 4 * 60
    params: dict[str, Any] = {"name": "toonclip-sweep", "timeout_min": default_timeout}
    if cfg.timeout_min is not None:
        params["timeout_min"] = int(cfg.timeout_min)
    for key, value in (cfg.slurm if cluster == "slurm" else {}).items():
        params[key if key in _GENERIC else f"slurm_{key}"] = value
    try:
        executor.update_parameters(**params)
    except (AssertionError, NameError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"launcher={cfg.name}: invalid job parameter: {first}") from exc
    return executor


def _run_submitit(tasks, cfg: LauncherConfig, folder: Path, on_start: OnStart, on_end: OnEnd):
    executor = make_executor(cfg, folder)
    limit = cfg.workers or (1 if cfg.name == "submitit_local" else len(tasks))
    limit = int(limit)
    if cfg.name == "submitit_local":
        tasks = [_share_cpus(t, limit) for t in tasks]
    pending, active = list(tasks), {}
    try:
        while pending or active:
            while pending and len(active) < limit:
                task = pending.pop(0)
                executor.update_parameters(name=f"toonclip-{task.name}")
                try:
                    with _environ(task.env):
                        job = executor.submit(run_member, task.command, str(task.run_dir), task.env)
                except Exception as exc:  # noqa: BLE001 - sbatch missing, rejected job, ...
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ToonclipError(
                        f"launcher={cfg.name}: could not submit {task.name}: "
                        f"{type(exc).__name__}: {first}"
                    ) from exc
                active[task.name] = (task, job)
                on_start(task, str(job.job_id))
            for name, (task, job) in list(active.items()):
                if job.done():
                    del active[name]
                    on_end(task, *_job_result(job))
            if active:
                time.sleep(cfg.poll_s)
    except KeyboardInterrupt:
        for task, job in active.values():
            with contextlib.suppress(Exception):
                job.cancel(check=False)
            on_end(task, None, "interrupted: the sweep was stopped (Ctrl-C)")
        raise


def _job_result(job) -> tuple[int | None, str | None]:
    """(exit code, None) from a job's result, or (None, reason) when the job itself failed."""
    try:
        return int(job.result()), None
    except Exception as exc:  # noqa: BLE001 - timeout, cancelled, node failure, OOM of the job
        lines = [line for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        return None, f"submitit job {job.job_id} did not complete: {reason[:300]}"
