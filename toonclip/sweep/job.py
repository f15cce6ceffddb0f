"""Running one member and reading back how it ended.

`run_member` is what every launcher executes (directly, in a thread, or pickled into a submitit
job), so it only uses the standard library and never raises for a failed training: the exit code
and the run folder carry the outcome.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

LOG_NAME = "train.log"


def run_member(command: list[str], run_dir: str, env: dict[str, str] | None = None) -> int:
    """Run `command` with stdout and stderr into `<run_dir>/train.log`; return its exit code.

    A negative code means the process was killed by that signal (e.g. -9 by the OOM killer).
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    # Unbuffered, so the log is in order and a killed process still leaves its last lines.
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(run / LOG_NAME, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    return proc.returncode


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's summary.json as a dict, or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(run_dir: str | Path) -> bool:
    summary = read_summary(run_dir)
    return bool(summary) and summary.get("status") == "finished"


def error_line(log_path: str | Path) -> str | None:
    """The last `error: ...` line of a log (without the prefix), else None."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return None


def _last_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines[1:] if line.strip()]  # [0] is the command
    return lines[-1][:300] if lines else ""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


# Exit codes of a child stopped from outside: 130/143 from `toonclip train` (Ctrl-C, SIGTERM),
# or the raw signals. SIGKILL is not among them: it is usually the out-of-memory killer.
STOPPED_CODES = (130, 143, -2, -15)


def outcome(run_dir: str | Path, exit_code: int | None, job_error: str | None = None):
    """(status, error) of a member that has stopped: `finished` only if summary.json says so.

    `exit_code` is None when the launcher lost the process (e.g. a Slurm job that timed out);
    `job_error` is then the launcher's reason.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir) or {}
    if exit_code == 0 and summary.get("status") == "finished":
        return "finished", None
    # Stopped from outside (Ctrl-C, a scheduler's SIGTERM, a kill): resumable, not broken.
    stopped = summary.get("status") == "interrupted" or exit_code in STOPPED_CODES
    status = "interrupted" if stopped else "failed"
    reason = error_line(run_dir / LOG_NAME) or summary.get("error") or job_error
    if exit_code is not None and exit_code < 0:  # a signal: the log's last line is not the cause
        reason = describe_exit(exit_code)
    if not reason:
        if exit_code is None:
            reason = "the job stopped without an exit code"
        elif exit_code == 0:
            reason = "training exited 0 but summary.json does not say finished"
        else:
            last = _last_line(run_dir / LOG_NAME)
            reason = describe_exit(exit_code) + (f": {last}" if last else "")
    return status, " ".join(str(reason).split())  # one line, whatever the source
