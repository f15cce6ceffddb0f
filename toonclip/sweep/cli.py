"""`toonclip sweep FILE [out=DIR] [launcher=NAME] [workers=N] [slurm.KEY=V ...] [key=value ...]`.

Sweep options are consumed here; every other `key=value` is passed, as written, to each member's
`toonclip train` after the file's `overrides`. Exit code 0 when every member finished, 1 when at
least one failed (the index says which and why), 2 for a bad command line or sweep file.
"""

from __future__ import annotations

import yaml

from toonclip.errors import ConfigError
from toonclip.sweep.runner import run_sweep
from toonclip.sweep.spec import load_sweep

USAGE = (
    "usage: toonclip sweep FILE [out=DIR] [launcher=sequential|parallel|submitit_local|slurm] "
    "[workers=N] [timeout_min=N] [slurm.partition=P ...] [force=true] [dry_run=true] "
    "[key=value ...]"
)
LAUNCHER_KEYS = ("launcher", "workers", "timeout_min", "poll_s")


def _value(text: str):
    """`2` -> 2, `true` -> True, `gpu` -> 'gpu' (YAML scalars, as in the sweep file)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_argv(argv: list[str]) -> tuple[str, dict, dict, list[str]]:
    """-> (sweep file, sweep options, launcher options, pass-through overrides)."""
    files, options, launcher, extra = [], {}, {}, []
    for arg in argv:
        if "=" not in arg or arg.startswith("="):
            files.append(arg)
            continue
        key, value = arg.split("=", 1)
        if key in ("out", "force", "dry_run"):
            options[key] = value
        elif key in LAUNCHER_KEYS or key.startswith("slurm."):
            launcher[key] = value if key == "launcher" else _value(value)
        else:
            extra.append(arg)
    if len(files) != 1:
        raise ConfigError(f"expected one sweep file, got {len(files)}; {USAGE}")
    return files[0], options, launcher, extra


def cli(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    file, options, launcher, extra = parse_argv(argv)
    flags = {}
    for key in ("force", "dry_run"):
        flags[key] = str(options.get(key, "false")).lower()
        if flags[key] not in ("true", "false"):
            raise ConfigError(f"{key}={options[key]}: use {key}=true or {key}=false")
    if flags["dry_run"] == "true":  # list the members and their commands; run and write nothing
        sweep = load_sweep(file, extra)
        for member in sweep.members:
            print(f"{member.name}: toonclip train {' '.join(member.overrides)}")
        print(f"{len(sweep.members)} members")
        return 0
    index = run_sweep(
        file, extra, out=options.get("out"), launcher=launcher, force=flags["force"] == "true"
    )
    failed = [m for m in index["members"] if m["status"] != "finished"]
    return 1 if failed else 0
