"""Finding the runs to compare: sweep folders (via their index), run folders, folders of runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from toonclip.errors import DataError
from toonclip.training.val_history import stability as val_stability

INDEX_JSON = "sweep_index.json"


@dataclass
class Run:
    """One column of the comparison. `path` is None for a sweep member that never got a folder."""

    name: str
    path: Path | None
    status: str = "unknown"  # finished | failed | running | pending | interrupted | unknown
    error: str | None = None
    arch: str | None = None
    encoder: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    cfg: DictConfig | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)  # see read_evaluation
    ckpt_file: Path | None = None  # a checkpoint named on the command line, else best/last

    @property
    def best(self) -> dict[str, Any]:
        return self.summary.get("best") or {}

    @property
    def stability(self) -> dict[str, Any] | None:
        """summary.json's `stability`, else computed from metrics.csv (runs from before it)."""
        if self.summary.get("stability") or self.path is None:
            return self.summary.get("stability")
        return val_stability(self.path / "metrics.csv")

    @property
    def drawn_last(self) -> bool:
        """A checkpoint other than best.ckpt was asked for (last.ckpt: the end of training)."""
        return self.ckpt_file is not None and self.ckpt_file.name != "best.ckpt"

    @property
    def psnr(self) -> float | None:
        """Val PSNR of the checkpoint drawn: the best, or the final validation's for last.ckpt."""
        source = (self.summary.get("final") or {}) if self.drawn_last else self.best
        value = source.get("val/psnr") if isinstance(source, dict) else None
        return float(value) if value is not None else None

    @property
    def psnr_gain(self) -> float | None:
        """`psnr` minus the identity baseline's val PSNR (summary.json: same pairs, size and
        pooling), so it describes the checkpoint drawn; None where either is unknown."""
        ident = self.summary.get("identity")
        base = _number(ident.get("val/psnr")) if isinstance(ident, dict) else None
        return self.psnr - base if self.psnr is not None and base is not None else None

    @property
    def size(self) -> int | None:
        """Training resolution (px), from summary.json or config.yaml."""
        size = self.summary.get("size") or cfg_get(self.cfg, "data.size")
        return int(size) if size else None

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint named on the command line, else best.ckpt, else last.ckpt, else None."""
        if self.ckpt_file is not None:
            return self.ckpt_file if self.ckpt_file.is_file() else None
        if self.path is None:
            return None
        for name in ("best.ckpt", "last.ckpt"):
            if (self.path / "checkpoints" / name).is_file():
                return self.path / "checkpoints" / name
        return None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "interrupted")


def cfg_get(cfg: DictConfig | None, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None) if cfg is not None else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


EVAL_KEYS = ("psnr", "ssim", "l1", "identity_psnr", "identity_ssim", "identity_l1")


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_evaluation(path: Path | None, summary: dict) -> dict[str, Any]:
    """The run's figures on its val split next to the identity baseline (the face as cartoon).

    From the newest `eval/val_*/eval.json` that `toonclip eval` wrote (means over pairs), else
    from summary.json's "final" (the last validation) and "identity" (the identity baseline on
    the same val split). Returns EVAL_KEYS, gain_psnr and gain_ssim (model minus identity), and
    "source" (where they came from); {} when the run has neither.
    """
    found = (
        sorted(path.glob("eval/val_*/eval.json"), key=lambda p: p.stat().st_mtime) if path else []
    )
    for file in reversed(found):
        data = _read_json(file)
        if _number(data.get("psnr")) is not None:
            figures = {k: _number(data.get(k)) for k in EVAL_KEYS}
            source = file.parent.relative_to(path).as_posix()
            break
    else:
        final, ident = (summary.get(k) for k in ("final", "identity"))
        final, ident = (d if isinstance(d, dict) else {} for d in (final, ident))
        if not final and not ident:
            return {}
        figures = {m: _number(final.get(f"val/{m}")) for m in ("psnr", "ssim", "l1")}
        figures.update(
            {f"identity_{m}": _number(ident.get(f"val/{m}")) for m in ("psnr", "ssim", "l1")}
        )
        if all(v is None for v in figures.values()):
            return {}
        source = "summary.json"
    for m in ("psnr", "ssim"):
        model, base = figures.get(m), figures.get(f"identity_{m}")
        figures[f"gain_{m}"] = model - base if model is not None and base is not None else None
    return {**figures, "source": source}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("summary.json", "config.yaml", "checkpoints")
    )


def load_run(path: Path, name: str | None = None, entry: dict | None = None) -> Run:
    """A Run from its folder; `entry` (its sweep index row) fills in what the folder lacks."""
    entry = entry or {}
    summary = _read_json(path / "summary.json") if path.is_dir() else {}
    cfg = None
    if (path / "config.yaml").is_file():
        try:
            cfg = OmegaConf.load(path / "config.yaml")
        except Exception:  # noqa: BLE001 - a broken config only costs us the fallbacks
            cfg = None
    status = summary.get("status") or entry.get("status") or "unknown"
    if entry.get("status") in ("failed", "interrupted") and status == "running":
        status = entry["status"]  # the process died without updating its summary
    return Run(
        name=name or path.name,
        path=path if path.is_dir() else None,
        status=status,
        error=summary.get("error") or entry.get("error"),
        arch=summary.get("arch") or cfg_get(cfg, "model.arch") or entry.get("arch"),
        encoder=summary.get("encoder") or cfg_get(cfg, "model.encoder") or entry.get("encoder"),
        summary=summary,
        cfg=cfg,
        evaluation=read_evaluation(path if path.is_dir() else None, summary),
    )


def _sweep_runs(folder: Path) -> list[Run]:
    index = _read_json(folder / INDEX_JSON)
    members = index.get("members")
    if not isinstance(members, list):
        raise DataError(
            f"{folder / INDEX_JSON} is not a sweep index; rerun the sweep to rewrite it"
        )
    return [load_run(folder / m.get("run_dir", m["name"]), m["name"], m) for m in members]


def discover(paths: list[str | Path]) -> list[Run]:
    """Runs from sweep folders, run folders, folders holding runs, or checkpoint files, in order.

    A checkpoint file (RUN/checkpoints/last.ckpt) draws that checkpoint instead of best.ckpt,
    and a name other than best.ckpt is appended to the run's ("run@last"), so a run can sit
    beside itself: the best val PSNR and the end of training differ where the look is not what
    PSNR selects (the adversarial term). Names stay unique across inputs (a clash is prefixed
    with the parent folder's name).
    """
    if not paths:
        raise DataError("no runs given; pass SWEEP_DIR or RUN_DIR (one or more)")
    runs: list[Run] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix == ".ckpt" and path.parent.name == "checkpoints":
            run = load_run(path.parent.parent)
            run.ckpt_file = path
            if run.drawn_last:
                run.name = f"{run.name}@{path.stem}"
            runs.append(run)
            continue
        if path.is_file() and path.name == INDEX_JSON:
            path = path.parent
        if not path.is_dir():
            raise DataError(
                f"{path} does not exist or is not a folder; pass a sweep folder "
                "(with sweep_index.json), a run folder (with summary.json) or a checkpoint "
                "(RUN/checkpoints/last.ckpt)"
            )
        if (path / INDEX_JSON).is_file():
            runs += _sweep_runs(path)
        elif is_run_dir(path):
            runs.append(load_run(path))
        else:
            found = [load_run(p) for p in sorted(path.iterdir()) if is_run_dir(p)]
            if not found:
                raise DataError(
                    f"{path} holds no runs: no sweep_index.json, summary.json or run folders"
                )
            runs += found
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1 and run.path is not None:
            run.name = f"{run.path.parent.name}/{run.name}"
    return runs
