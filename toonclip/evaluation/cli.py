"""`toonclip eval ckpt=RUN|FILE [data.root=DIR] [split=val|train|all] [size=N] [out=DIR] [n=8] ...`.

The model is a run folder (its best, else last, checkpoint), a `.ckpt` file, or an exported
`.onnx` (or `.tflite`) file. Defaults come from the model's run folder: for a checkpoint
`RUN/checkpoints/x.ckpt`, for an exported file `RUN/x.onnx` or `RUN/export/x.onnx`. The run gives
data.root, data.faces_dir, data.cartoons_dir, the split (`val`: the stems in `RUN/val_files.txt`)
and the size (`data.size`; an exported file's own size wins). `train` scores the other pairs,
the ones the run learnt from: the gap to `val` is what it has not generalised. An exported file
outside any run needs data.root=DIR and scores `split=all` by default.

Pairs are decoded the way validation decodes them (toonclip.data.cache at
`data.size * data.cache_scale`, then an area resize to the size), so on the run's own split the
identity figures are those of the pairs the training validated on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from toonclip.cli import parse_options
from toonclip.data.cache import build_cache
from toonclip.data.io import resize
from toonclip.data.pairs import find_pairs
from toonclip.errors import ConfigError, DataError
from toonclip.evaluation import report
from toonclip.evaluation.metrics import ModelFn, run_pairs
from toonclip.inference import torch_device

log = logging.getLogger(__name__)
USAGE = (
    "toonclip eval ckpt=RUN|FILE.ckpt|FILE.onnx [data.root=DIR] [split=val|train|all] [size=N] "
    "[out=DIR] [n=8] [device=cpu] [batch=4] [data.skip_bad=true]"
)
OPTIONS = ("ckpt", "data.root", "data.faces_dir", "data.cartoons_dir", "split", "size", "out")
OPTIONS += ("n", "device", "batch", "data.skip_bad")
SPLITS = ("val", "train", "all")
EXPORTED = (".onnx", ".tflite")


@dataclass
class Model:
    fn: ModelFn  # (B, 3, H, W) float [0, 1] -> (B, 3, H, W)
    path: Path  # the checkpoint or exported file
    size: int  # its native size (training size, or the exported graph's)
    fixed_size: int | None  # set when the graph only takes size x size
    run_dir: Path | None  # the run it belongs to, if any
    cfg: DictConfig | None  # that run's config


def _is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() or (folder / "val_files.txt").is_file()


def load(ckpt: str | Path, device: str = "cpu") -> Model:
    """The model behind ckpt= (run folder, .ckpt, .onnx or .tflite) and the run it came from."""
    from toonclip.inference import load_checkpoint, nhwc, resolve_checkpoint

    path = Path(ckpt)
    if not path.exists():
        raise DataError(f"ckpt={path} does not exist; pass a run folder, a .ckpt or an .onnx file")
    dev = torch_device(device)
    if path.suffix.lower() in EXPORTED:
        from toonclip.export.runtime import load_model

        if dev.type != "cpu":
            raise ConfigError(f"device={device}: {path.name} runs on the CPU (onnxruntime/LiteRT)")
        try:
            loaded = load_model(path)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{path.name} needs the package '{exc.name}': pip install -e '.[export]'"
            ) from exc
        run_dir = next((p for p in (path.parent, path.parent.parent) if _is_run(p)), None)
        cfg_file = run_dir / "config.yaml" if run_dir else None
        cfg = OmegaConf.load(cfg_file) if cfg_file and cfg_file.is_file() else None
        gen = loaded.generator.eval()
        return Model(gen, path, loaded.size, loaded.fixed_size, run_dir, cfg)
    path = resolve_checkpoint(path)
    generator, cfg = load_checkpoint(path)
    generator = nhwc(generator.to(dev).eval())
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None

    def fn(x: torch.Tensor) -> torch.Tensor:
        return generator(x.to(dev).contiguous(memory_format=torch.channels_last))

    return Model(fn, path, int(cfg.data.size), None, run_dir, cfg)


def _int(opts: dict, key: str, default: int, minimum: int) -> int:
    try:
        value = int(opts.get(key, default))
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{key}={opts[key]}: use a whole number >= {minimum}")
    return value


def _pick(opts: dict, model: Model, key: str, default=None):
    """data.<key> from the options, else from the run's config, else `default`."""
    if opts.get(f"data.{key}"):
        return opts[f"data.{key}"]
    if model.cfg is not None:
        return OmegaConf.select(model.cfg, f"data.{key}", default=None) or default
    return default


def load_pairs(model: Model, opts: dict, size: int):
    """(faces, cartoons, stems, split, root): (N, size, size, 3) uint8 arrays of the chosen split."""
    root = _pick(opts, model, "root")
    if root is None:
        raise ConfigError(
            f"no data.root for {model.path}: none given and no run config next to it "
            "names one; pass data.root=DIR"
        )
    if not Path(root).expanduser().is_dir():
        where = "" if "data.root" in opts else " (from the run's config)"
        raise DataError(f"data.root={root}{where} does not exist; pass data.root=DIR")
    val_files = model.run_dir / "val_files.txt" if model.run_dir else None
    has_val = val_files is not None and val_files.is_file()
    split = opts.get("split", "val" if has_val or model.cfg is not None else "all")
    pairs = find_pairs(root, _pick(opts, model, "faces_dir", "ffhq"),
                       _pick(opts, model, "cartoons_dir", "comics_heroes"))  # fmt: skip
    if split in ("val", "train"):
        if not has_val:
            raise DataError(f"split={split} needs val_files.txt in the run folder of {model.path}; "
                            "pass split=all to score every pair")  # fmt: skip
        stems = [s.strip() for s in val_files.read_text().splitlines() if s.strip()]
        by_stem = {p.stem: p for p in pairs}
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DataError(
                f"{len(missing)} stem(s) of {val_files} have no pair under {root}, e.g. "
                f"'{missing[0]}'; pass the run's data with data.root=DIR"
            )
        held_out = set(stems)
        if split == "val":
            pairs = [by_stem[s] for s in stems]
        else:  # the pairs the run trained on
            pairs = [p for p in pairs if p.stem not in held_out]
    # As the validation set: decode at the cache size, then an area resize to `size`.
    scale = float(_pick({}, model, "cache_scale", 1.25))
    cache_size = int(math.ceil(size * scale / 32) * 32)
    faces, cartoons, kept = build_cache(pairs, cache_size, skip_bad=_skip_bad(opts, model))
    faces = np.stack([resize(f, size) for f in faces])
    cartoons = np.stack([resize(c, size) for c in cartoons])
    return faces, cartoons, [p.stem for p in kept], split, str(root)


def _skip_bad(opts: dict, model: Model) -> bool:
    """data.skip_bad from the options, else the run's: true scores the pairs that decode."""
    from toonclip.cli import parse_bool

    if "data.skip_bad" in opts:
        return parse_bool("data.skip_bad", opts["data.skip_bad"])
    return bool(_pick({}, model, "skip_bad", False))


def default_out(model: Model, split: str, size: int) -> Path:
    """RUN/eval/<split>_<size>px (`_<ckpt>` added for a checkpoint other than best/last), or
    eval_<stem>/<split>_<size>px next to an exported file."""
    name = f"{split}_{size}px"
    if model.path.suffix.lower() in EXPORTED:
        return model.path.parent / f"eval_{model.path.stem}" / name
    if model.path.stem not in ("best", "last"):
        name += f"_{model.path.stem}"
    return (model.run_dir or model.path.parent) / "eval" / name


def run_eval(opts: dict[str, str], echo=print) -> dict:
    """Score the model of `opts` (the command's key=value options); returns eval.json's data."""
    if "ckpt" not in opts:
        raise ConfigError(f"eval needs ckpt=...: {USAGE}")
    n, batch = _int(opts, "n", 8, 0), _int(opts, "batch", 4, 1)
    if opts.get("split", "val") not in SPLITS:
        raise ConfigError(
            f"split={opts['split']}: use split=val (the run's val_files.txt), train (the "
            "other pairs) or all"
        )
    model = load(opts["ckpt"], opts.get("device", "cpu"))
    size = _int(opts, "size", model.fixed_size or model.size, 32)
    if size % 32:
        raise ConfigError(f"size={size}: must be a multiple of 32 (the encoder's stride)")
    if model.fixed_size and size != model.fixed_size:
        raise ConfigError(f"size={size}: {model.path.name} only takes {model.fixed_size} px")
    faces, cartoons, stems, split, root = load_pairs(model, opts, size)
    echo(f"scoring {model.path} on {len(stems)} pair(s) ({split} of {root}) at {size} px")
    rows, means, preds = run_pairs(model.fn, faces, cartoons, stems, batch, keep=n)
    out = Path(opts.get("out") or default_out(model, split, size))
    out.mkdir(parents=True, exist_ok=True)
    info = {"split": split, "size": size, "model": str(model.path), "data_root": root}
    report.write_csv(rows, means, out / "eval.csv")
    report.write_markdown(rows, means, info, out / "eval.md")
    report.write_json(means, info, out / "eval.json")
    if n:
        report.write_grid(faces, preds, cartoons, means, out / "grid.png")
    echo(report.headline(means))
    echo(f"wrote {out}")
    return {**means, **info, "out": str(out)}


def cli(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}")
        return 0
    _, opts = parse_options(argv, "toonclip eval", OPTIONS, paths=False)
    run_eval(opts)
    return 0
