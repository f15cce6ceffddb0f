"""Run a sweep: decide which members need training, launch them, keep the index current.

Rerunning a sweep into the same folder skips members whose summary.json says `finished` and
retries the others (their old run folder is replaced). A finished member whose overrides have
changed since is an error unless `force=true` (which retrains every member).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import toonclip
from toonclip.errors import ConfigError
from toonclip.sweep.index import SweepIndex
from toonclip.sweep.job import LOG_NAME, is_finished, outcome, read_summary
from toonclip.sweep.launch import LauncherConfig, Task, launch, launcher_config
from toonclip.sweep.spec import Member, format_value, load_sweep

DEFAULT_ROOT = Path("experiments") / "sweeps"


def train_command(member: Member, run_dir: Path) -> list[str]:
    """The member's training command: `python -m toonclip.cli train OVERRIDES run_dir=DIR`."""
    return [
        sys.executable,
        "-m",
        "toonclip.cli",
        "train",
        *member.overrides,
        f"run_dir={format_value(str(run_dir))}",
    ]


def _child_env() -> dict[str, str]:
    # Lets `python -m toonclip.cli` (and submitit's job process) import toonclip from a source
    # checkout that is not pip-installed.
    import os

    src = str(Path(toonclip.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": src + (os.pathsep + path if path else "")}


def prevalidate(member: Member) -> str | None:
    """The one-line reason a member cannot train (unknown arch/encoder name), else None."""
    from toonclip.models import resolve_arch, resolve_encoder

    try:
        resolve_arch(member.arch)
        resolve_encoder(member.encoder)
    except ConfigError as exc:
        return str(exc)
    return None


def _write_failed_run(run_dir: Path, member: Member, reason: str) -> None:
    """A run folder for a member that never started, so `compare` shows it as failed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_NAME).write_text(f"error: {reason}\n", encoding="utf-8")
    summary = {
        "name": member.name,
        "arch": member.arch,
        "encoder": member.encoder,
        "status": "failed",
        "error": reason,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def run_sweep(
    sweep_file: str | Path,
    extra: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    launcher: LauncherConfig | dict | None = None,
    force: bool = False,
    command=train_command,
    log=print,
) -> dict:
    """Run (or resume) a sweep; returns the final index as a dict.

    `launcher`: a LauncherConfig, or command-line launcher options merged over the file's
    `launcher:` section (see `launcher_config`). `command(member, run_dir) -> argv` builds each
    member's command (tests swap it for a stub).
    """
    sweep = load_sweep(sweep_file, extra)
    folder = Path(out or DEFAULT_ROOT / sweep.name).resolve()
    if not isinstance(launcher, LauncherConfig):
        launcher = launcher_config(sweep.launcher, launcher or {})
    index = SweepIndex(folder, sweep.name, str(sweep.path), launcher.name)
    # Check every finished member before touching any folder: a refusal changes nothing.
    finished = set() if force else {m.name for m in sweep.members if is_finished(folder / m.name)}
    for member in sweep.members:
        recorded = index.previous(member.name).get("overrides")
        if member.name in finished and recorded not in (None, list(member.overrides)):
            raise ConfigError(
                f"{folder} already holds a finished {member.name} trained with other "
                "overrides; use out=NEW_DIR, or force=true to retrain every member"
            )
    entries, tasks = [], []
    for member in sweep.members:
        run_dir = folder / member.name
        argv = command(member, run_dir)
        prev = index.previous(member.name)
        entry = {
            "name": member.name,
            "arch": member.arch,
            "encoder": member.encoder,
            "params": member.params,
            "overrides": list(member.overrides),
            "run_dir": member.name,
            "status": "pending",
            "error": None,
            "exit_code": None,
            "started": None,
            "ended": None,
            "duration_s": None,
            "job_id": None,
            "command": shlex.join(argv),
        }
        if member.name in finished:
            keep = {
                k: prev.get(k) for k in ("started", "ended", "duration_s", "exit_code", "job_id")
            }
            entries.append({**entry, **keep, "status": "finished", "skipped": True})
            continue
        if run_dir.exists():  # a failed or interrupted attempt: start clean
            shutil.rmtree(run_dir)
        reason = prevalidate(member)
        if reason:
            _write_failed_run(run_dir, member, reason)
            entries.append({**entry, "status": "failed", "error": reason})
            continue
        entries.append(entry)
        tasks.append(Task(member.name, argv, run_dir, _child_env()))
    index.set_members(entries)
    skipped = sum(1 for e in entries if e.get("skipped"))
    log(
        f"sweep {sweep.name}: {len(entries)} members, {len(tasks)} to run, {skipped} already "
        f"finished, launcher={launcher.name}, folder {folder}"
    )
    for e in entries:
        if e["status"] == "failed":
            log(f"  {e['name']}: failed: {e['error']}")

    starts: dict[str, float] = {}

    def on_start(task: Task, job_id: str | None) -> None:
        starts[task.name] = time.time()
        index.update(
            task.name, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"), job_id=job_id
        )
        log(f"  {task.name}: running" + (f" (job {job_id})" if job_id else ""))

    def on_end(task: Task, code: int | None, job_error: str | None) -> None:
        status, error = outcome(task.run_dir, code, job_error)
        duration = round(time.time() - starts.get(task.name, time.time()), 1)
        index.update(
            task.name,
            status=status,
            error=error,
            exit_code=code,
            duration_s=duration,
            ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        log(f"  {task.name}: {status} in {duration:.0f} s" + (f": {error}" if error else ""))

    try:
        launch(tasks, launcher, folder, on_start, on_end)
    except KeyboardInterrupt:
        for e in index.data["members"]:
            if e["status"] == "running":
                summary = read_summary(folder / e["run_dir"]) or {}
                index.update(
                    e["name"],
                    status="interrupted",
                    error=summary.get("error") or "interrupted (the sweep was stopped)",
                )
        raise
    counts = index.counts()
    log(
        f"sweep {sweep.name}: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; index: {folder / 'sweep_index.md'}"
    )
    return index.data
