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


def pareto_plot(rows: list[dict], path: Path, quality: str = "val_psnr") -> list[str]:
    """Plot `quality` (PSNR, dB) against CPU latency at 256 px, each run labelled.

    Runs without both numbers (failed, latency off) are listed under the axes instead.
    Returns the names of the runs on the Pareto front.
    """
    have = [r for r in rows if r.get(quality) is not None and r.get("latency_ms_256") is not None]
    missing = [r["run"] for r in rows if r not in have]
    fig = Figure(figsize=(7.5, 5), dpi=110)
    ax = fig.subplots()
    front: list[str] = []
    if have:
        pts = [(float(r["latency_ms_256"]), float(r[quality])) for r in have]
        on_front = pareto_front(pts)
        front = [have[i]["run"] for i in on_front]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=36, color="tab:blue", zorder=3)
        fx, fy = [pts[i][0] for i in on_front], [pts[i][1] for i in on_front]
        ax.step(fx, fy, where="post", color="tab:orange", lw=1.5, zorder=2, label="Pareto front")
        ax.scatter(fx, fy, s=80, facecolors="none", edgecolors="tab:orange", zorder=4)
        for (x, y), r in zip(pts, have, strict=True):
            ax.annotate(
                r["run"].replace("__", "\n"),
                (x, y),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
            )
        ax.legend(loc="lower right", fontsize=8)
        ax.margins(x=0.25, y=0.2)
    else:
        ax.text(
            0.5,
            0.5,
            "no run has both a PSNR and a latency",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("CPU latency at 256 px (ms, lower is better)")
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
