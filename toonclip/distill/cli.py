"""`toonclip distill teacher=RUN|CKPT [student.arch=...] [student.encoder=...]
[student.decoder_width=...] [data.extra_faces=DIR] [key=value ...]`.

A `toonclip train` run with `distill=default model=student`: `teacher=` is `distill.teacher=`,
`student.<key>=` is `model.<key>=`, every other option is a train option (experiment=, data.*,
trainer.*, distill.teacher_weight, ...). Unless given, data.root and data.size are the
teacher's. The run folder, grids (face | teacher | student | target), eval, checkpoints and export
are those of `train`; `resume=true run_dir=DIR` continues a distillation like any run.
"""

from __future__ import annotations

from toonclip.errors import ConfigError


def distill_overrides(argv: list[str]) -> list[str]:
    """The `toonclip train` overrides for a `toonclip distill` command line."""
    out = ["distill=default", "model=student"]
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(
                f"unexpected argument '{arg}': options are key=value, e.g. teacher=RUN_DIR"
            )
        key, value = arg.split("=", 1)
        bare = key.lstrip("+~")
        if bare == "teacher":
            out.append(f"distill.teacher={value}")
        elif bare.startswith("student."):
            out.append(f"{key[: len(key) - len(bare)]}model.{bare[len('student.') :]}={value}")
        else:
            out.append(arg)
    return out


def cli(argv: list[str]) -> int:
    from toonclip.training import entry

    return entry.cli(distill_overrides(argv))
