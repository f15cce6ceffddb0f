"""summary.json: what a run is, how it did, and how it was made."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

PACKAGES = (
    "toonclip",
    "torch",
    "torchvision",
    "lightning",
    "segmentation-models-pytorch",
    "timm",
    "albumentations",
    "hydra-core",
    "torchmetrics",
)


def gflops(model: torch.nn.Module, size: int) -> float:
    """Forward GFLOPs of `model` on one (1, 3, size, size) image; FLOPs = 2 x multiply-adds."""
    param = next(model.parameters())
    x = torch.rand(1, 3, size, size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """HEAD of the repository holding this package (plus '-dirty' with uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_summary(path: Path, data: dict) -> None:
    """Write atomically, so a reader (sweep index, compare) never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_summary(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def best_metrics(metrics_csv: Path, key: str = "val/psnr") -> dict:
    """The validation row of metrics.csv with the highest `key` (val/psnr, val/ssim, val/l1, val/loss)."""
    import csv

    best: dict = {}
    try:
        with open(metrics_csv, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key) and (not best or float(row[key]) > best[key]):
                    best = {
                        k: round(float(v), 4)
                        for k, v in row.items()
                        if k.startswith("val/") and v not in ("", None)
                    }
                    best["step"] = int(float(row.get("step") or 0))
    except OSError:
        return {}
    return best
