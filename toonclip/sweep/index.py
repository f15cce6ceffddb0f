"""The sweep index: `sweep_index.json` (for tools) and `sweep_index.md` (for people).

It is rewritten atomically every time a member starts or stops, so a sweep that is still running,
or was killed, can be inspected at any time. Member statuses: `pending`, `running`, `finished`,
`failed`, `interrupted` (stopped from outside: Ctrl-C, SIGTERM, a kill; resumable).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

INDEX_JSON = "sweep_index.json"
INDEX_MD = "sweep_index.md"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def load_index(folder: str | Path) -> dict | None:
    """The parsed sweep_index.json of a sweep folder, or None."""
    try:
        data = json.loads((Path(folder) / INDEX_JSON).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("members"), list) else None


class SweepIndex:
    """Thread-safe record of a sweep's members, persisted on every change."""

    def __init__(self, folder: Path, sweep: str, source: str, launcher: str):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        previous = load_index(self.folder) or {}
        self.data: dict[str, Any] = {
            "sweep": sweep,
            "file": source,
            "launcher": launcher,
            "created": previous.get("created", _now()),
            "updated": _now(),
            "members": [],
        }
        self._previous = {m.get("name"): m for m in previous.get("members", [])}

    def previous(self, name: str) -> dict:
        """The member's entry from an earlier invocation of the sweep ({} if none)."""
        return dict(self._previous.get(name) or {})

    def set_members(self, entries: list[dict]) -> None:
        with self._lock:
            self.data["members"] = entries
            self._write()

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            for entry in self.data["members"]:
                if entry["name"] == name:
                    entry.update(fields)
                    break
            else:
                raise KeyError(name)
            self._write()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.data["members"]:
            out[entry["status"]] = out.get(entry["status"], 0) + 1
        return out

    def _write(self) -> None:
        self.data["updated"] = _now()
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.folder / INDEX_JSON, json.dumps(self.data, indent=2) + "\n")
        _atomic_write(self.folder / INDEX_MD, render_markdown(self.data))


def _atomic_write(path: Path, text: str) -> None:
    # Write-then-rename: a reader never sees a half-written index.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = f"{value:.0f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: dict) -> str:
    """The index as a Markdown page: one table row per member."""
    counts: dict[str, int] = {}
    for m in data["members"]:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    lines = [
        f"# Sweep `{data['sweep']}`",
        "",
        f"File: `{data['file']}` · launcher: {data['launcher']} · updated {data['updated']}",
        "",
        "Members: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "",
        "| member | arch | encoder | status | time (s) | error |",
        "|---|---|---|---|---|---|",
    ]
    for m in data["members"]:
        error = m.get("error") or ""
        error = error if len(error) <= 160 else error[:157] + "..."
        row = [
            f"[{m['name']}]({m['run_dir']}/)",
            m.get("arch"),
            m.get("encoder"),
            m["status"],
            m.get("duration_s"),
            error,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"
