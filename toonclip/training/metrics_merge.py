"""Keep a resumed run's metrics.csv history.

Lightning's CSVLogger deletes an existing metrics.csv when it starts, so a resumed run would lose
the history before the crash: `set_aside` moves it away before fit and `merge_back` puts the
rows logged before the resumed step back in front of the new ones afterwards. A resume that
crashes (kill -9) never reaches `merge_back`; the next `set_aside` merges first, so the history
survives any number of crashes.
"""

from __future__ import annotations

import csv
from pathlib import Path

BEFORE = "metrics.before_resume.csv"


def set_aside(run_dir: Path) -> None:
    if (run_dir / BEFORE).is_file():  # the previous resume died before merging: merge now
        merge_back(run_dir)
    if (run_dir / "metrics.csv").is_file():
        (run_dir / "metrics.csv").replace(run_dir / BEFORE)


def merge_back(run_dir: Path) -> None:
    old_path, new_path = run_dir / BEFORE, run_dir / "metrics.csv"
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
