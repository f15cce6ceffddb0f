"""The `toonclip` console command: one subcommand per task, options as Hydra-style `key=value`.

Subcommands are imported lazily so `toonclip --help` is instant and an optional extra that is not
installed only breaks the command that needs it.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from collections.abc import Iterable

from toonclip.errors import ConfigError, ToonclipError

# name -> ("module:function", one-line help). Each function takes the remaining argv list.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "toonclip.training.entry:cli",
        "train a model: toonclip train [experiment=NAME] [key=value ...]",
    ),
    "distill": (
        "toonclip.distill.cli:cli",
        "train a small student on a teacher: toonclip distill teacher=RUN [student.encoder=...]",
    ),
    "predict": (
        "toonclip.predict:cli",
        "cartoonise images: toonclip predict ckpt=FILE input=FILE|DIR output=DIR",
    ),
    "eval": (
        "toonclip.evaluation.cli:cli",
        "score a model against the identity baseline: toonclip eval ckpt=RUN|FILE [split=val|all]",
    ),
    "data": ("toonclip.data.fetch:cli", "data tools: toonclip data fetch [dest=DIR]"),
    "bench-train": ("toonclip.training.bench:cli", "training img/s vs a plain PyTorch loop"),
    "sweep": (
        "toonclip.sweep.cli:cli",
        "run a sweep: toonclip sweep FILE [out=DIR] [launcher=NAME]",
    ),
    "compare": (
        "toonclip.compare.cli:cli",
        "compare runs: toonclip compare SWEEP_DIR|RUN_DIR... [out=DIR]",
    ),
    "export": (
        "toonclip.export.cli:cli",
        "export: toonclip export ckpt=FILE format=onnx|coreml|tflite",
    ),
    "bench": ("toonclip.export.bench:cli", "inference size/latency table: toonclip bench MODEL..."),
    "temporal": (
        "toonclip.evaluation.temporal_cli:cli",
        "video flicker / warping error: toonclip temporal MODEL... video=FILE|synthetic",
    ),
    "stylize": (
        "toonclip.stylize.cli:cli",
        "stylise images, folders or videos: toonclip stylize MODEL input=...",
    ),
    "demo": ("toonclip.demo.app:cli", "Gradio demo: toonclip demo MODEL..."),
}


def split_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split argv into positionals and `key=value` options (values kept as strings)."""
    positionals, options = [], {}
    for arg in argv:
        if "=" in arg and not arg.startswith("="):
            key, value = arg.split("=", 1)
            options[key.lstrip("+~")] = value
        else:
            positionals.append(arg)
    return positionals, options


def parse_options(
    argv: list[str], program: str, valid: Iterable[str], *, paths: bool = True
) -> tuple[list[str], dict[str, str]]:
    """`split_args`, then refuse what `program` (e.g. "toonclip eval") does not take, before any work:
    an unknown option names the nearest valid one (a typo of `source=` must not quietly fall
    back to the default), and with `paths=False` a bare word is refused too."""
    valid = list(valid)
    positionals, options = split_args(argv)
    unknown = [key for key in options if key not in valid]
    if unknown:
        near = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {near[0]}=?)" if near else ""
        raise ConfigError(
            f"{program} has no option '{unknown[0]}'{hint}; valid: {', '.join(valid)}"
        )
    if positionals and not paths:
        raise ConfigError(
            f"{program}: unexpected argument '{positionals[0]}'; options are key=value, "
            f"valid: {', '.join(valid)}"
        )
    return positionals, options


def parse_bool(key: str, value: str) -> bool:
    """A `key=value` option's true/false (also 1/0, yes/no, on/off), or a one-line ConfigError."""
    low = str(value).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={value}: use true or false")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: toonclip COMMAND [key=value ...]\n\ncommands:\n{rows}\n"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message (as logging.lastResort does),
    so that commands run in-process (an interactive session, tests capturing stderr) see their
    log lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _setup_logging() -> None:
    """INFO for toonclip's own messages; Lightning keeps its own handler (no double lines).
    Once per process: a second command run in-process adds no second handler."""
    logger = logging.getLogger("toonclip")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        near = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        print(
            f"error: unknown command '{name}'{hint}; valid: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    _setup_logging()
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("toonclip"):
            print(f"error: 'toonclip {name}' is not available in this version", file=sys.stderr)
        else:
            print(
                f"error: 'toonclip {name}' needs the package '{exc.name}'; "
                f"install it with: pip install -e '.[all]'",
                file=sys.stderr,
            )
        return 2
    # Imported here, not at the top, so that `toonclip --help` stays instant.
    from hydra.errors import InstantiationException

    try:
        result = getattr(module, func_name)(rest)
    except ToonclipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InstantiationException as exc:
        # Hydra could not build a `_target_` that the config checks passed (its constructor
        # refused the arguments, e.g. +loss.bogus_weight=1); its message names the target and,
        # on a line of its own, the config key.
        parts = "; ".join(ln.strip().rstrip(".:") for ln in str(exc).splitlines() if ln.strip())
        print(f"error: {parts}; fix that key in the config or on the command line", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
