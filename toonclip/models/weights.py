"""Pretrained-weights policy shared by the encoder and the loss network (VGG16).

A policy is one of:
- ``auto``: ImageNet weights when they can be had (local cache or network), else random init with a
  loud warning; which one happened is recorded in the run summary.
- ``imagenet``: ImageNet weights or a clear error.
- ``none``: random init.
- a path to a local weights file (``.pth``/``.pt``/``.bin``/``.safetensors``).

This machine may have no internet. Hub downloads can stall for minutes on a closed network, so before
any download we probe the host with a short TCP connect and go offline at once when it fails.
``TOONCLIP_OFFLINE=1`` skips the probe entirely.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from toonclip.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

POLICIES = ("auto", "imagenet", "none")
# Per-channel RGB mean and std of ImageNet: both pretrained networks expect inputs normalised so.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_imagenet_stats(module: torch.nn.Module) -> None:
    """Give `module` non-persistent (1, 3, 1, 1) buffers `mean` and `std` for
    (x - mean) / std on RGB in [0, 1]; non-persistent, so they never enter a checkpoint."""
    module.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


@dataclass
class WeightsRecord:
    """What was asked for and what was loaded; goes into summary.json."""

    component: str
    requested: str
    loaded: str  # "imagenet", "random" or "file:<path>"
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def parse_policy(value: object, option: str) -> str:
    """Normalise a policy value from config; a path must exist."""
    text = "none" if value is None or value is False else str(value)
    if text.lower() in POLICIES:
        return text.lower()
    if text.lower() in {"null", "random"}:
        return "none"
    if not Path(text).expanduser().is_file():
        raise ConfigError(
            f"{option}={text}: not a file and not one of {', '.join(POLICIES)}; "
            "give a local weights file or a policy"
        )
    return str(Path(text).expanduser())


@functools.lru_cache(maxsize=8)
def can_reach(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to host:port opens within `timeout` seconds."""
    if os.environ.get("TOONCLIP_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def go_offline_unless_reachable(host: str) -> bool:
    """Make hub libraries fail fast (cache only) when `host` cannot be reached; returns online."""
    online = can_reach(host)
    if not online:
        # huggingface_hub reads the variable once at import, so the constant is patched too;
        # downloads then become immediate cache lookups instead of a minute of retries.
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            import huggingface_hub.constants as hf_constants

            hf_constants.HF_HUB_OFFLINE = True
        except ImportError:
            pass
    return online


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file (torch pickle or safetensors); unwraps {'state_dict': ...} checkpoints."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any read failure is the user's file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds no state dict")
    return state


def load_matching(module: torch.nn.Module, state: dict, path: str, component: str) -> None:
    """Load the tensors of `state` whose names and shapes match `module`; fail if none do."""
    own = module.state_dict()
    # Files come from a bare timm/torchvision model or from a wrapper around one, so try
    # dropping a prefix from the file's names and adding one to match this module's names.
    strip = ("", "model.", "encoder.model.", "encoder.", "features.", "net.encoder.model.")
    add = ("", "model.")
    best: dict = {}
    for drop in strip:
        for extra in add:
            cand = {}
            for k, v in state.items():
                name = extra + k[len(drop) :] if k.startswith(drop) else None
                if name in own and own[name].shape == v.shape:
                    cand[name] = v
            if len(cand) > len(best):
                best = cand
    if not best:
        raise WeightsError(
            f"weights file {path} has no tensors matching the {component}; "
            "check it was saved from the same architecture"
        )
    module.load_state_dict(best, strict=False)
    log.info("%s: loaded %d/%d tensors from %s", component, len(best), len(own), path)


def warn_fallback(component: str, reason: str) -> None:
    """The loud warning for `auto` falling back to random weights."""
    bar = "!" * 78
    log.warning(
        "\n%s\n%s: ImageNet weights unavailable (%s).\nFalling back to RANDOM init; "
        "results will be much worse. Put the weights in the cache or pass a file path;\n"
        "this fallback is recorded in summary.json.\n%s",
        bar,
        component,
        reason,
        bar,
    )
