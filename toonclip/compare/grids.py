"""Comparison grids (same faces in every row, one column per run) and per-run learning strips.

Images are (H, W, 3) uint8 RGB throughout. Every run sees the same input faces: each face is
center-cropped, resized to the run's training size, stylised, and fitted to the display tile, so
runs trained at different sizes still line up.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from toonclip.compare.runs import Run, cfg_get
from toonclip.data.io import center_square, is_image_file, load_rgb, resize
from toonclip.errors import DataError
from toonclip.evaluation.metrics import checker_energy, to_tensor
from toonclip.inference import Stylizer
from toonclip.visual import make_grid

_STEP = re.compile(r"step_(\d+)\.png$")


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def find_image(folder: Path, stem: str) -> Path | None:
    matches = [p for p in folder.glob(f"{stem}.*") if is_image_file(p)]
    return sorted(matches)[0] if matches else None


def val_faces(runs: list[Run], n: int | None, root: str | None = None):
    """(faces, targets, note): the first `n` validation pairs of the first run that lists them.

    Every run of a sweep shares one split (same data and seed), so the reference run's
    val_files.txt names faces that none of the runs trained on. `root` replaces data.root.
    """
    tried = []
    for run in runs:
        files = run.path / "val_files.txt" if run.path else None
        if files is None or not files.is_file() or run.cfg is None:
            continue
        base = Path(root or cfg_get(run.cfg, "data.root") or "")
        faces_dir = base / (cfg_get(run.cfg, "data.faces_dir") or "ffhq")
        targets_dir = base / (cfg_get(run.cfg, "data.cartoons_dir") or "comics_heroes")
        count = n or int(cfg_get(run.cfg, "grid.n_samples") or 6)
        stems = [s.strip() for s in files.read_text().splitlines() if s.strip()][:count]
        pairs = [(find_image(faces_dir, s), find_image(targets_dir, s)) for s in stems]
        pairs = [(f, t) for f, t in pairs if f is not None and t is not None]
        if pairs:
            faces = [center_square(load_rgb(f)) for f, _ in pairs]
            targets = [center_square(load_rgb(t)) for _, t in pairs]
            return faces, targets, f"{len(pairs)} validation faces of {run.name} from {base}"
        tried.append(str(base))
    where = ", ".join(dict.fromkeys(tried)) or "no run folder has val_files.txt and config.yaml"
    return [], [], f"validation faces not found ({where}); pass data.root=DIR"


def folder_faces(folder: str | Path, n: int, log=print) -> tuple[list[np.ndarray], list[str]]:
    """(faces, stems): the first `n` images (by name) of a folder that decode, center-cropped
    to squares. A file that cannot be decoded is logged and the next one takes its place."""
    faces, stems = [], []
    for path in sorted(p for p in Path(folder).iterdir() if is_image_file(p)):
        if len(faces) == n:
            break
        try:
            faces.append(center_square(load_rgb(path)))
        except DataError as exc:
            # A folder of test faces is often a download; one bad file should not cost the page.
            log(f"  faces: {exc}; skipped")
            continue
        stems.append(path.stem)
    return faces, stems


def peer_column(folder: str | Path, stems: list[str], tile: int, log=print):
    """(header, images, real): another model's outputs for the same faces, found by file stem
    in `folder` (e.g. peer-u2net/u2net), center-cropped. A grey tile stands where one is
    missing or cannot be decoded (logged), and `real` flags the tiles that are outputs."""
    folder = Path(folder)
    if stems and all(find_image(folder, stem) is None for stem in stems):
        raise DataError(
            f"peers: {folder} has no image named like the faces ({', '.join(stems[:3])}, ...); "
            "a peer folder holds outputs under the faces' file names"
        )
    images, real = [], []
    for stem in stems:
        path, image, why = find_image(folder, stem), None, f"no {stem}"
        if path is not None:
            try:
                image = center_square(load_rgb(path))
            except DataError as exc:
                # One bad file among a peer's outputs should not cost the whole page.
                log(f"  peers: {exc}; drawn as a grey tile")
                why = f"cannot decode {path.name}"
        real.append(image is not None)
        images.append(image if image is not None else grey_tile(tile, why))
    return f"{folder.name}\n(peer outputs)", images, real


def predict(stylizer: Stylizer, faces: list[np.ndarray]) -> list[np.ndarray]:
    """Each square face resized (area filter) to the run's training size, then stylised."""
    # np.array copies: decoded images can be read-only, which torch.from_numpy warns about.
    return [stylizer(np.array(resize(face, stylizer.size))) for face in faces]


def with_checker(columns, size: int, drawn=None) -> list[tuple[str, list[np.ndarray]]]:
    """(header, images) columns with a last header line "checker X": the images' mean checker
    energy (metrics.checker_energy, x1000), each image resized to `size` first so that columns
    at other sizes are read alike. `drawn`: one entry per column (default all True): False for
    a run that did not load (its tiles are placeholders: the header stays as it is), or a list
    of one flag per image, measuring only the flagged ones (a peer column's grey tiles)."""
    out = []
    for i, (head, images) in enumerate(columns):
        flags = True if drawn is None else drawn[i]
        flags = [flags] * len(images) if isinstance(flags, bool) else flags
        measured = [image for image, flag in zip(images, flags, strict=True) if flag]
        if measured:
            stack = to_tensor(np.stack([resize(image, size) for image in measured]))
            head = f"{head}\nchecker {1000 * float(np.mean(checker_energy(stack))):.1f}"
        out.append((head, images))
    return out


def checker_note(size: int) -> str:
    return (
        f"'checker' under a column: its pixel-scale texture x1000 at {size} px (mean |2x2 "
        "checker filter|, toonclip.evaluation.metrics.checker_energy); checker and speckle "
        "noise raise it, flat shading and straight outlines do not"
    )


def header(run: Run, width: int) -> str:
    """Column header: the run name wrapped to `width` characters, then the val PSNR of the
    checkpoint drawn and its gain over the identity baseline (when known), or its status."""
    lines = []
    for part in run.name.replace("@", "__@").split("__"):  # run@last: "@last" on its own line
        lines += textwrap.wrap(part, width) or [""]
    gain = run.psnr_gain
    if run.status != "failed" and run.psnr is not None:
        lines.append(f"PSNR {run.psnr:.2f} dB")
        # Not the metrics table's gain (final validation or `toonclip eval`): beside best.ckpt's
        # PSNR that one would describe another checkpoint.
        if gain is not None:
            lines.append(f"gain {gain:+.2f} dB")
        if run.status != "finished":  # e.g. stopped by hand once it levelled off
            lines.append(run.status.upper())
    elif run.status == "finished":
        lines.append("PSNR n/a")
    else:
        lines.append(run.status.upper())
    return "\n".join(lines)


def failed_tile(run: Run, tile: int, reason: str | None = None) -> np.ndarray:
    """A grey (tile, tile, 3) uint8 tile saying why a run has no prediction."""
    title = run.status.upper() if run.failed else "NO PREDICTION"
    return grey_tile(tile, str(reason or run.error or "no checkpoint"), title)


def grey_tile(tile: int, text: str, title: str | None = None) -> np.ndarray:
    """A grey (tile, tile, 3) uint8 placeholder: an optional red title, then `text` wrapped."""
    text = " ".join(text.split())
    top = 26 if title else 6
    max_lines = max(1, (tile - top - 4) // 15)
    lines = textwrap.wrap(text, max(8, tile // 7), max_lines=max_lines, placeholder=" ...")
    canvas = Image.new("RGB", (tile, tile), (90, 90, 90))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 6), title, fill=(255, 190, 190), font=_font(13))
    draw.multiline_text((6, top), "\n".join(lines), fill=(240, 240, 240), font=_font(11))
    return np.asarray(canvas)


def comparison_grid(
    faces: list[np.ndarray],
    targets: list[np.ndarray] | None,
    columns: list[tuple[str, list[np.ndarray]]],
    tile: int,
    labels: tuple[str, str] = ("face", "target"),
) -> np.ndarray:
    """Rows = faces; columns = face | target (if any) | one column per (header, images).

    labels: the face and target columns' headers."""
    headers = [labels[0]] + ([labels[1]] if targets else []) + [h for h, _ in columns]
    rows = []
    for i, face in enumerate(faces):
        row = [face] + ([targets[i]] if targets else [])
        rows.append(row + [images[i] for _, images in columns])
    # Header lines take 16 px each in make_grid; pad them so all columns share one height.
    height = max(h.count("\n") + 1 for h in headers)
    headers = [h + "\n" * (height - h.count("\n") - 1) for h in headers]
    return make_grid(rows, headers=headers, tile=tile)


def grid_steps(run: Run) -> list[tuple[int, Path]]:
    """(step, path) of the run's validation grids, oldest first (`latest.png` excluded)."""
    if run.path is None or not (run.path / "grids").is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in (run.path / "grids").iterdir() if (m := _STEP.search(p.name))
    ]
    return sorted(found)


def learning_strip(run: Run, max_grids: int = 8, height: int = 256) -> np.ndarray | None:
    """The run's validation grids side by side (each scaled to `height`), labelled by step.

    At most `max_grids` grids, evenly spaced and always including the first and the last.
    """
    steps = grid_steps(run)
    if not steps:
        return None
    if len(steps) > max_grids:
        picks = np.linspace(0, len(steps) - 1, max_grids).round().astype(int)
        steps = [steps[i] for i in dict.fromkeys(picks.tolist())]
    images = []
    for step, path in steps:
        img = Image.fromarray(load_rgb(path))
        width = max(1, round(img.width * height / img.height))
        images.append((step, img.resize((width, height), Image.Resampling.BICUBIC)))
    pad, label_h = 6, 20
    canvas = Image.new(
        "RGB",
        (sum(i.width for _, i in images) + pad * (len(images) + 1), height + label_h + pad),
        (255, 255, 255),
    )
    draw, x = ImageDraw.Draw(canvas), pad
    for step, img in images:
        draw.text((x + 2, 3), f"step {step}", fill=(0, 0, 0), font=_font(13))
        canvas.paste(img, (x, label_h))
        x += img.width + pad
    return np.asarray(canvas)
