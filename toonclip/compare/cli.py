"""`toonclip compare SWEEP_DIR|RUN_DIR|CKPT... [out=DIR] [faces=DIR [peers=DIR,...]] [n=N] ...`.

A run is drawn from its best.ckpt (best val PSNR); RUN/checkpoints/last.ckpt draws the end of
training instead, as a column named RUN@last (runs/discover).

Writes into `out` (default `<SWEEP_DIR>/compare` for one input, else
`experiments/compare/<timestamp>`):

    index.html          everything below on one page, with a sortable metrics table
    compare_val.png     fixed validation faces: face | target | one column per run
    compare_faces.png   faces without targets (faces=DIR), one column per run, then one per
                        peers= folder: another model's outputs for the same faces, by file
                        name (e.g. ../shared/data/peer-u2net/u2net: the visual bar)
    metrics.csv/.md     arch, encoder, params, GFLOPs@256, PSNR, SSIM, L1, loss, eval figures
                        and their gain over the identity baseline, times, latency
    pareto.png          PSNR against CPU latency at 256 px (latency=onnx: ONNX Runtime
                        fp32 and int8, with their file sizes; see compare/onnx_cost.py)
    strips/<run>.png    each run's validation grids over steps
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from toonclip.cli import parse_options
from toonclip.compare import grids as G
from toonclip.compare.cost import cpu_name, run_cost
from toonclip.compare.page import Page, write_page
from toonclip.compare.plot import pareto_plot
from toonclip.compare.runs import Run, discover
from toonclip.compare.tables import (
    row,
    table_notes,
    write_csv,
    write_markdown,
)
from toonclip.errors import ConfigError, DataError, ToonclipError
from toonclip.inference import Stylizer, load_checkpoint
from toonclip.visual import save_png

USAGE = (
    "usage: toonclip compare SWEEP_DIR|RUN_DIR|RUN/checkpoints/last.ckpt... [out=DIR] "
    "[faces=DIR [peers=DIR,...]] [n=N] [tile=PX] "
    "[data.root=DIR] [latency=torch|onnx] [latency_runs=N] [threads=N] [strip_max=N]"
)
INTS = {"n": 1, "tile": 32, "latency_runs": 0, "threads": 1, "strip_max": 1}  # name -> minimum
OPTIONS = ("out", "faces", "peers", "data.root", "latency", *INTS)
LATENCY = ("torch", "onnx")


def _load(run: Run):
    """(generator, training size, None), or (None, None, why there is no prediction)."""
    if run.status == "failed":  # an interrupted run's checkpoints are fine to draw
        return None, None, run.error or run.status
    ckpt = run.checkpoint
    if ckpt is None:
        return None, None, "no checkpoint yet" if run.status == "running" else "no checkpoint"
    try:
        generator, cfg = load_checkpoint(ckpt)
    except ToonclipError as exc:
        return None, None, f"checkpoint unreadable: {exc}"
    return generator, int(cfg.data.size), None


def _check_peers(peers, faces) -> None:
    if peers and not faces:
        raise ConfigError("peers= needs faces=DIR: the faces whose outputs the peer folders hold")
    for folder in peers:
        if not Path(folder).is_dir():
            raise DataError(f"peers: {folder} is not a folder; pass folders of output images")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def compare(
    paths,
    out=None,
    faces=None,
    peers=(),
    n=None,
    tile=160,
    data_root=None,
    latency_runs=5,
    threads=2,
    strip_max=8,
    latency="torch",
    log=print,
) -> Path:
    """Compare runs; returns the path of the written index.html."""
    if latency not in LATENCY:
        raise ConfigError(f"latency={latency}: use latency=torch (PyTorch eager) or latency=onnx")
    _check_peers(peers, faces)
    runs = discover(paths)
    if out is None:
        single = len(paths) == 1 and Path(paths[0]).is_dir()
        out = (
            Path(paths[0]) / "compare"
            if single
            else (Path("experiments") / "compare" / time.strftime("%Y%m%d-%H%M%S"))
        )
    out = Path(out)
    (out / "strips").mkdir(parents=True, exist_ok=True)
    log(f"comparing {len(runs)} runs into {out}")
    val_faces, val_targets, val_note = G.val_faces(runs, n, data_root)
    read, test_faces, names, faces_note = [], [], [], ""
    if faces:
        if not Path(faces).is_dir():
            raise DataError(f"faces={faces} is not a folder; pass a folder of face images")
        # One read: int8 calibration (latency=onnx) wants 8 faces even when the page shows fewer.
        count = n or 6
        read, stems = G.folder_faces(faces, max(count, 8) if latency == "onnx" else count, log)
        test_faces, names = read[:count], stems[:count]
        faces_note = f"{len(test_faces)} images from {faces}: {', '.join(names)}"
        if not test_faces:
            faces_note = f"no usable images in {faces}"
    # Read before any model is loaded: a peer folder without the faces' names fails early.
    peers_read = [G.peer_column(folder, names, tile, log) for folder in peers]
    peer_cols = [(head, images) for head, images, _ in peers_read]
    if peer_cols:
        faces_note += "; beside the outputs in " + ", ".join(str(p) for p in peers)

    calib = None
    if latency == "onnx":  # int8 calibration: the comparison's faces, else synthetic ones
        from toonclip.export.quantize import faces_tensor, synthetic_faces

        calib = faces_tensor(read[:8], 128) if test_faces else synthetic_faces(128, n=8)
    # Characters per header line: run names (digits, "_", lower case) are ~7.5 px wide each
    # at the 13 px header font; 8 px keeps a line inside its tile.
    width = max(8, (tile - 4) // 8)
    cache: dict = {}
    rows, val_cols, face_cols, strips, sizes = [], [], [], [], []
    for run in runs:
        generator, size, reason = _load(run)
        sizes.append(size if generator is not None else None)
        head = G.header(run, width)
        if generator is not None:
            stylizer = Stylizer(generator, size)
            val_cols.append((head, G.predict(stylizer, val_faces)))
            face_cols.append((head, G.predict(stylizer, test_faces)))
        else:
            blank = G.failed_tile(run, tile, reason)
            val_cols.append((head, [blank] * len(val_faces)))
            face_cols.append((head, [blank] * len(test_faces)))
        rows.append(row(run, run_cost(run, generator, cache, latency_runs, threads, calib)))
        strip = G.learning_strip(run, strip_max)
        text = f"status: {run.status}" + (f" — {run.error}" if run.failed and run.error else "")
        if strip is None:
            strips.append((run.name, text + " · no validation grids", None))
        else:
            save_png(strip, out / "strips" / f"{_slug(run.name)}.png")
            strips.append((run.name, text, f"strips/{_slug(run.name)}.png"))
        log(f"  {run.name}: {run.status}" + (f" ({reason})" if reason else ""))
        del generator

    notes = table_notes(
        latency, latency_runs, threads, tile, cpu_name(), calibrated_on_faces=bool(test_faces)
    )
    write_csv(rows, out / "metrics.csv")
    write_markdown(rows, out / "metrics.md", note="\n\n".join(notes))
    front = pareto_plot(
        rows, out / "pareto.png", latency="onnx_fp32_ms" if latency == "onnx" else "latency_ms_256"
    )
    page = Page(
        title="toonclip run comparison",
        inputs=[str(p) for p in paths],
        rows=rows,
        notes=notes,
        pareto="pareto.png",
        front=front,
        val_note=val_note,
        faces_note=faces_note,
        strips=strips,
    )
    # Pixel-scale texture under every column, all at one size (the first loaded run's, else the
    # tile): where a model adds checker or speckle noise, it shows against the peers' flat shading.
    size = next((s for s in sizes if s), tile)
    drawn = [s is not None for s in sizes]
    if val_faces:
        columns = G.with_checker(val_cols, size, drawn)
        labels = G.with_checker([("face", val_faces), ("target", val_targets)], size)
        grid = G.comparison_grid(val_faces, val_targets, columns, tile, tuple(h for h, _ in labels))
        save_png(grid, out / "compare_val.png")
        page.val_grid, page.val_note = "compare_val.png", f"{val_note}. {G.checker_note(size)}"
    if test_faces:
        columns = G.with_checker(
            face_cols + peer_cols, size, drawn + [real for *_, real in peers_read]
        )
        face = G.with_checker([("face", test_faces)], size)[0][0]
        grid = G.comparison_grid(test_faces, None, columns, tile, (face, ""))
        save_png(grid, out / "compare_faces.png")
        page.faces_grid = "compare_faces.png"
        page.faces_note = f"{faces_note}. {G.checker_note(size)}"
    write_page(page, out / "index.html")
    log(f"comparison: {out / 'index.html'}")
    return out / "index.html"


def cli(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    paths, options = parse_options(argv, "toonclip compare", OPTIONS)
    kwargs = {}
    for key, minimum in INTS.items():
        if key in options:
            try:
                kwargs[key] = int(options[key])
            except ValueError:
                kwargs[key] = minimum - 1
            if kwargs[key] < minimum:
                raise ConfigError(f"{key}={options[key]}: use a whole number >= {minimum}")
    compare(
        paths,
        out=options.get("out"),
        faces=options.get("faces"),
        peers=[p for p in options.get("peers", "").split(",") if p],
        data_root=options.get("data.root"),
        latency=options.get("latency", "torch"),
        **kwargs,
    )
    return 0
