"""The quality-vs-latency Pareto plot (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

# The object-oriented API needs no backend: importing this module must not switch a notebook's
# inline backend to Agg (matplotlib.use would, for every later plot in that kernel).
from matplotlib.figure import Figure


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower latency x, higher quality y).

    Sorted by latency. A point is on the front when no other point is at least as fast and
    at least as good, and strictly better in one of the two.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def short_labels(names: list[str]) -> list[str]:
    """Run names without the `__`-separated parts they all share (a sweep over one arch/encoder
    pair differs only in its overrides), one part per line."""
    parts = [n.split("__") for n in names]
    common = set(parts[0]).intersection(*parts[1:]) if len(parts) > 1 else set()
    return ["\n".join([q for q in p if q not in common] or p) for p in parts]


def _label_offsets(ax, pts: list[tuple[float, float]], labels: list[str]) -> list[float]:
    """Extra vertical offsets (points) that stop labels of nearby runs from overprinting: from
    the highest run down, a label that would overlap one already placed moves below it."""
    ax.get_xlim(), ax.get_ylim()  # settle autoscaling before reading positions
    px = ax.transData.transform(pts)
    scale = 72 / ax.figure.dpi  # pixels -> points
    line = 9.5 / scale  # a 7 pt line, in pixels
    placed: list[tuple[float, float, float]] = []  # x, bottom, top of each label (pixels)
    offsets = [0.0] * len(pts)
    for i in sorted(range(len(pts)), key=lambda k: -px[k][1]):
        x, natural = px[i][0], px[i][1] + 4 / scale  # labels sit 4 pt above their point
        height = line * (labels[i].count("\n") + 1)
        bottom = natural
        for ox, obottom, otop in sorted(placed, key=lambda p: -p[1]):
            if abs(ox - x) < 120 and bottom < otop and bottom + height > obottom:
                bottom = obottom - height - 2
        placed.append((x, bottom, bottom + height))
        offsets[i] = (bottom - natural) * scale
    return offsets


AXES = {
    "latency_ms_256": "CPU latency at 256 px (ms, PyTorch eager, NHWC, lower is better)",
    "onnx_fp32_ms": "CPU latency at 256 px (ms, ONNX Runtime; dots fp32, crosses int8)",
}


def pareto_plot(
    rows: list[dict], path: Path, quality: str = "val_psnr", latency: str = "latency_ms_256"
) -> list[str]:
    """Plot `quality` (PSNR, dB) against CPU latency at 256 px, each run labelled.

    latency: the row key on the x axis; with "onnx_fp32_ms" the int8 latency of each run is
    drawn too (a cross joined to its fp32 dot). Runs without both numbers (failed, latency off)
    are listed under the axes instead. Returns the names of the runs on the Pareto front.
    """
    have = [r for r in rows if r.get(quality) is not None and r.get(latency) is not None]
    missing = [r["run"] for r in rows if r not in have]
    fig = Figure(figsize=(7.5, 5), dpi=110)
    ax = fig.subplots()
    front: list[str] = []
    if have:
        pts = [(float(r[latency]), float(r[quality])) for r in have]
        if latency == "onnx_fp32_ms":
            int8 = [
                (float(r["onnx_int8_ms"]), y)
                for (_, y), r in zip(pts, have, strict=True)
                if r.get("onnx_int8_ms") is not None
            ]
            for (x, y), r in zip(pts, have, strict=True):
                if r.get("onnx_int8_ms") is not None:
                    ax.plot([float(r["onnx_int8_ms"]), x], [y, y], color="gray", lw=0.6, zorder=1)
            if int8:
                ax.scatter(
                    *zip(*int8, strict=True),
                    marker="x",
                    s=30,
                    color="tab:green",
                    zorder=3,
                    label="int8 (at the fp32 PSNR)",
                )
        on_front = pareto_front(pts)
        front = [have[i]["run"] for i in on_front]
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            s=36,
            color="tab:blue",
            zorder=3,
            label="fp32" if latency == "onnx_fp32_ms" else None,
        )
        fx, fy = [pts[i][0] for i in on_front], [pts[i][1] for i in on_front]
        ax.step(fx, fy, where="post", color="tab:orange", lw=1.5, zorder=2, label="Pareto front")
        ax.scatter(fx, fy, s=80, facecolors="none", edgecolors="tab:orange", zorder=4)
        ax.legend(loc="lower right", fontsize=8)
        xs = [p[0] for p in pts]
        if min(xs) > 0 and max(xs) / min(xs) > 10:  # a teacher beside its students: 10-100x apart
            ax.set_xscale("log")
        ax.margins(x=0.25, y=0.2)
        labels = short_labels([r["run"] for r in have])
        for (x, y), label, dy in zip(pts, labels, _label_offsets(ax, pts, labels), strict=True):
            ax.annotate(
                label,
                (x, y),
                textcoords="offset points",
                xytext=(5, 4 + dy),
                fontsize=7,
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray"} if dy else None,
            )
    else:
        ax.text(
            0.5,
            0.5,
            "no run has both a PSNR and a latency",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel(AXES.get(latency, latency))
    ax.set_ylabel("validation PSNR (dB, higher is better)")
    ax.set_title("Quality vs latency")
    ax.grid(alpha=0.3)
    if missing:
        fig.text(
            0.01,
            0.01,
            "not plotted (no PSNR or latency): " + ", ".join(missing)[:150],
            fontsize=7,
            color="dimgray",
        )
    fig.tight_layout(rect=(0, 0.03 if missing else 0, 1, 1))
    fig.savefig(path)
    return front
