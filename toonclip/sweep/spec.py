"""Reading a sweep file and expanding it into members (one training run each).

A sweep file (YAML, in `experiments/`):

    grid:             # cartesian product of these keys, in the order written
      model.arch: [unetplusplus, unet]
      model.encoder: [mobilenetv3_large_100, efficientnet-b0]
    members_extra:    # optional single members added after the grid
      - {model.arch: deeplabv3plus, model.encoder: resnet18}
    overrides:        # applied to every member
      data.size: 128
    launcher:         # optional defaults for the launcher (the command line wins)
      name: parallel
      workers: 2

Nested mappings are flattened to dotted keys (`data: {size: 128}` is `data.size: 128`).
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toonclip.errors import ConfigError

TOP_LEVEL_KEYS = ("grid", "members_extra", "overrides", "launcher", "description")
# Keys the sweep itself sets for each member; a sweep file must not set them.
RESERVED = ("run_dir",)
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_./\-+:@%]+")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Member:
    """One run of a sweep.

    `params` are the keys that vary across members (from `grid` or `members_extra`); `overrides`
    is the complete Hydra override list for `toonclip train`, except `run_dir`.
    """

    name: str
    params: dict[str, Any]
    overrides: tuple[str, ...]

    @property
    def arch(self) -> str:
        return str(self.params.get("model.arch", ""))

    @property
    def encoder(self) -> str:
        return str(self.params.get("model.encoder", ""))


@dataclass
class Sweep:
    path: Path
    members: list[Member]
    launcher: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


def format_value(value: Any) -> str:
    """A YAML value as the right-hand side of a Hydra override (`key=<this>`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _SAFE_VALUE.fullmatch(text):
        return text
    # Anything with spaces, commas, quotes or brackets is quoted so Hydra reads one string.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{'data': {'size': 64}} -> {'data.size': 64}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def resolve_sweep_path(name: str | Path) -> Path:
    """FILE as given, else `experiments/FILE` and `experiments/FILE.yaml` (so `arch_backbone` works)."""
    path = Path(name)
    for candidate in (path, Path("experiments") / path, Path("experiments") / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"sweep file {path} does not exist; pass a YAML file such as experiments/arch_backbone.yaml"
    )


def load_sweep(path: str | Path, extra: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Parse and validate a sweep file; `extra` are raw `key=value` overrides for every member.

    Raises ConfigError (one line naming the file and the fix) for a malformed file.
    """
    path = resolve_sweep_path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"sweep file {path} is not valid YAML: {first}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"sweep file {path} must be a mapping with a 'grid:' key; see docs/sweeps.md"
        )
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), TOP_LEVEL_KEYS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ConfigError(
            f"sweep file {path}: unknown top-level key '{unknown[0]}'{hint}; "
            f"valid keys: {', '.join(TOP_LEVEL_KEYS)}"
        )
    grid, extras = data.get("grid"), data.get("members_extra") or []
    if not grid and not extras:
        raise ConfigError(
            f"sweep file {path} has no 'grid:'; add e.g. "
            "grid: {model.arch: [unet], model.encoder: [resnet18]}"
        )
    if grid is not None and not isinstance(grid, dict):
        raise ConfigError(f"sweep file {path}: 'grid:' must map keys to lists of values")
    if not isinstance(extras, list) or not all(isinstance(m, dict) for m in extras):
        raise ConfigError(f"sweep file {path}: 'members_extra:' must be a list of mappings")
    overrides = _overrides(path, data.get("overrides"))
    launcher = data.get("launcher") or {}
    if isinstance(launcher, str):
        launcher = {"name": launcher}
    if not isinstance(launcher, dict):
        raise ConfigError(f"sweep file {path}: 'launcher:' must be a name or a mapping")

    combos = _grid_members(path, flatten(grid or {})) + [flatten(m) for m in extras]
    extra_keys = {_key(raw): raw for raw in extra}
    for key in RESERVED:
        if key in overrides or key in extra_keys or any(key in c for c in combos):
            raise ConfigError(f"sweep file {path}: '{key}' is set by the sweep for each member")
    members = _members(path, combos, overrides, extra_keys)
    return Sweep(path=path, members=members, launcher=launcher)


def _key(raw: str) -> str:
    if "=" not in raw:
        raise ConfigError(f"'{raw}' is not a key=value override")
    return raw.split("=", 1)[0].lstrip("+~")


def _overrides(path: Path, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return flatten(value)
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return dict(v.split("=", 1) for v in value)
    raise ConfigError(f"sweep file {path}: 'overrides:' must be a mapping of key: value")


def _grid_members(path: Path, grid: dict[str, Any]) -> list[dict[str, Any]]:
    axes = []
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"sweep file {path}: grid key '{key}' has an empty list of values")
        axes.append([(key, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else []


def _members(
    path: Path, combos: list[dict], overrides: dict[str, Any], extra: dict[str, str]
) -> list[Member]:
    # Keys that differ across members name the run folder (besides arch and encoder).
    # A key one member sets (even to null) and another leaves alone varies too.
    varying = [
        k
        for k in dict.fromkeys(k for c in combos for k in c)
        if len({format_value(c[k]) if k in c else None for c in combos}) > 1
    ]
    members: dict[str, Member] = {}
    for combo in combos:
        clash = [k for k in combo if k in overrides or k in extra]
        if clash:
            raise ConfigError(
                f"sweep file {path}: '{clash[0]}' is swept per member and also set for every "
                "member (in 'overrides:' or on the command line); set it in one place"
            )
        params = {
            **{k: v for k, v in overrides.items() if k in ("model.arch", "model.encoder")},
            **combo,
        }
        for raw in extra.values():  # a command-line arch/encoder names the runs too
            key, value = raw.split("=", 1)
            if key.lstrip("+~") in ("model.arch", "model.encoder"):
                params[key.lstrip("+~")] = value
        if "model.arch" not in params or "model.encoder" not in params:
            raise ConfigError(
                f"sweep file {path}: member {combo} has no model.arch or model.encoder; "
                "put both in 'grid:', 'members_extra:' or 'overrides:'"
            )
        name = member_name(params, [k for k in varying if k not in ("model.arch", "model.encoder")])
        # The command line wins over the file: drop the file's value rather than pass both.
        args = [f"{k}={format_value(v)}" for k, v in overrides.items() if k not in extra]
        args += [f"{k}={format_value(v)}" for k, v in combo.items()]
        member = Member(name=name, params=params, overrides=tuple(args + list(extra.values())))
        if name in members and members[name].overrides != member.overrides:
            raise ConfigError(f"sweep file {path}: two different members are both named {name}")
        members.setdefault(name, member)
    return list(members.values())


def member_name(params: dict[str, Any], varying: list[str]) -> str:
    """`<arch>__<encoder>`, then `__<key>-<value>` for any other key that varies across members."""
    parts = [str(params["model.arch"]), str(params["model.encoder"])]
    parts += [f"{k.rsplit('.', 1)[-1]}-{_name_value(params[k])}" for k in varying if k in params]
    return "__".join(_SAFE_NAME.sub("_", p).strip("_") or "x" for p in parts)


def _name_value(value: Any) -> str:
    """As the override writes it (null, false), lists joined by '_' (crop_scale-0.7_1.0)."""
    if isinstance(value, list | tuple):
        return "_".join(_name_value(v) for v in value)
    return str(value) if isinstance(value, str) else format_value(value)
