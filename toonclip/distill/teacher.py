"""Reading a teacher's run config without building it (for defaults taken from the teacher)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from toonclip.errors import ConfigError
from toonclip.inference import resolve_checkpoint


def teacher_config(path: str | Path) -> DictConfig:
    """The resolved train config of a teacher run folder or checkpoint."""
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file():
        return OmegaConf.load(path / "config.yaml")
    ckpt = resolve_checkpoint(path)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        return OmegaConf.create(state["hyper_parameters"]["cfg"])
    except Exception as exc:  # noqa: BLE001 - anything unreadable is "not a teacher"
        raise ConfigError(
            f"teacher={path}: not a toonclip run folder or checkpoint ({type(exc).__name__}); "
            "pass a folder made by toonclip train or its checkpoints/best.ckpt"
        ) from exc
