"""Composing the Hydra config from the package's config groups and `key=value` overrides."""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from toonclip.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
GROUPS = ("data", "model", "loss", "optim", "trainer", "distill", "experiment")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """Compose `configs/<config_name>.yaml` with Hydra overrides; errors become one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(exc, list(overrides))) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _explain(exc: Exception, overrides: list[str]) -> str:
    """Turn Hydra's multi-line errors into one line naming the option and what is valid."""
    text = " ".join(str(exc).split())
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        value = override.split("=", 1)[1] if "=" in override else ""
        if (
            key in GROUPS
            and f"'{key}/{value}'" in text.replace('"', "'")
            or (key in GROUPS and "Could not find" in text)
        ):
            opts = group_options(key)
            near = difflib.get_close_matches(value, opts, n=1)
            hint = f" (did you mean {key}={near[0]}?)" if near else ""
            return f"{key}={value}: no such config{hint}; valid: {', '.join(opts)}"
        if f"'{key}'" in text or f"'{key.split('.')[-1]}'" in text:
            parent = ".".join(key.split(".")[:-1])
            valid = _valid_keys(parent)
            near = difflib.get_close_matches(key.split(".")[-1], valid, n=1)
            hint = f" (did you mean {parent + '.' if parent else ''}{near[0]}?)" if near else ""
            return f"unknown or invalid option '{override}'{hint}; valid keys under '{parent or '.'}': {', '.join(valid)}"
    return f"bad configuration: {text[:300]}"


def _valid_keys(parent: str) -> list[str]:
    try:
        base = compose(())
        node = OmegaConf.select(base, parent) if parent else base
        return sorted(node.keys()) if isinstance(node, DictConfig) else []
    except ConfigError:
        return []


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
