"""`index.html`: the whole comparison on one self-contained page.

No external CSS, JS or fonts; images are linked by relative paths inside the output folder, so
the folder can be zipped, copied or served as is. The metrics table sorts by any column on
click (numbers numerically, blanks last; click again to reverse).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from toonclip.compare.tables import OPTIONAL, columns, display

NUMERIC = {
    "params",
    "gflops_256",
    "val_psnr",
    "val_ssim",
    "val_l1",
    "val_loss",
    "eval_psnr",
    "eval_ssim",
    "identity_psnr",
    "gain_psnr",
    "gain_ssim",
    "train_size",
    "train_time_s",
    "train_img_per_s",
    "effective_img_per_s",
    "val_swing_db",
    "latency_ms_256",
    *OPTIONAL,  # ONNX and distillation figures: all numbers
}

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:100%}
h1{margin-bottom:.2rem} .meta,.note{color:#555;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}
td:nth-child(-n+4),th:nth-child(-n+4),td:last-child{text-align:left}
td:last-child{white-space:normal;max-width:28rem;color:#a00}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{background:#fff3f3} tr.front td:first-child{font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:.3rem 0} .strip{margin-bottom:1.2rem}
.scroll{overflow-x:auto}
"""

JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    function sort() {
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var numeric = th.dataset.type === "num", body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        if (x === y) return 0;
        if (x === "") return 1;  // unknown values stay at the bottom either way
        if (y === "") return -1;
        return dir * (numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
  });
});
"""


@dataclass
class Page:
    title: str
    inputs: list[str]
    rows: list[dict]
    notes: list[str]
    pareto: str | None = None
    front: list[str] = field(default_factory=list)
    val_grid: str | None = None
    val_note: str = ""
    faces_grid: str | None = None
    faces_note: str = ""
    strips: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, text, image


def _img(src: str, alt: str) -> str:
    return f'<img src="{quote(src)}" alt="{html.escape(alt)}" loading="eager">'


def _cell(key: str, value) -> str:
    raw = html.escape("" if value is None else str(value))
    text = display(key, value)
    if len(text) > 160:  # long error lines: the start in the cell, all of it on hover
        return f'<td data-v="{raw}" title="{html.escape(text)}">{html.escape(text[:157])}...</td>'
    return f'<td data-v="{raw}">{html.escape(text)}</td>'


def _table(rows: list[dict], front: list[str]) -> str:
    cols = columns(rows)
    heads = "".join(
        f'<th tabindex="0" data-key="{k}" data-type="{"num" if k in NUMERIC else "text"}">'
        f"{html.escape(h)}</th>"
        for k, h in cols
    )
    body = []
    for r in rows:
        classes = " ".join(
            c
            for c, on in (("failed", r.get("status") != "finished"), ("front", r["run"] in front))
            if on
        )
        cells = "".join(_cell(k, r.get(k)) for k, _ in cols)
        body.append(f'<tr class="{classes}" data-run="{html.escape(r["run"])}">{cells}</tr>')
    return (
        f'<div class="scroll"><table id="metrics" class="sortable"><thead><tr>{heads}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def render(page: Page) -> str:
    e = html.escape
    parts = [
        f"<h1>{e(page.title)}</h1>",
        f'<p class="meta">{len(page.rows)} runs from '
        + ", ".join(f"<code>{e(i)}</code>" for i in page.inputs)
        + "</p>",
        "<h2>Metrics</h2>",
        '<p class="note">Click a column header to sort (again to reverse). Bold: on the Pareto '
        'front. Download: <a href="metrics.csv">metrics.csv</a> · '
        '<a href="metrics.md">metrics.md</a></p>',
        _table(page.rows, page.front),
        "".join(f'<p class="note">{e(n)}</p>' for n in page.notes),
    ]
    if page.pareto:
        parts += ["<h2>Quality vs latency</h2>", _img(page.pareto, "PSNR against CPU latency")]
    parts.append("<h2>Validation faces</h2>")
    parts.append(f'<p class="note">{e(page.val_note)}</p>')
    if page.val_grid:
        parts.append(f'<div class="scroll">{_img(page.val_grid, "validation comparison")}</div>')
    if page.faces_grid or page.faces_note:
        parts += ["<h2>Faces without targets</h2>", f'<p class="note">{e(page.faces_note)}</p>']
        if page.faces_grid:
            parts.append(f'<div class="scroll">{_img(page.faces_grid, "test faces")}</div>')
    parts.append("<h2>How each run learned</h2>")
    parts.append(
        '<p class="note">Validation grids over training steps '
        "(rows: face | prediction | target).</p>"
    )
    for name, text, image in page.strips:
        inner = _img(image, f"learning strip of {name}") if image else ""
        parts.append(
            f'<div class="strip"><h3>{e(name)}</h3><p class="note">{e(text)}</p>'
            f'<div class="scroll">{inner}</div></div>'
        )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(page.title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + f"\n<script>{JS}</script>\n</body></html>\n"
    )


def write_page(page: Page, path: Path) -> None:
    path.write_text(render(page), encoding="utf-8")
