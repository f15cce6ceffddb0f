"""Where `toonclip train` and `toonclip distill` start: the command line is composed with Hydra
(~0.2 s) before `training/run.py` imports Lightning, smp and timm (~6 s on a 2-core host), so a
mistyped key, group or bare word fails in about a second; run.py then does the real work."""

from __future__ import annotations

from toonclip.cli import split_args
from toonclip.config import compose
from toonclip.errors import ConfigError


def cli(argv: list[str]) -> int:
    positionals, options = split_args(argv)
    if positionals:
        raise ConfigError(
            f"unexpected argument '{positionals[0]}': options are key=value, e.g. data.size=128"
        )
    if "resume" not in options:  # a resume composes the run's saved overrides first (run.prepare)
        compose(argv)
    from toonclip.training import run

    return run.cli(argv)
