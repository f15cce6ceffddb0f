"""Notebooks are committed without outputs; this check fails when one is not.

    python scripts/check_notebooks.py [NOTEBOOK_OR_DIR ...]      # default: notebooks/
    python scripts/check_notebooks.py --fix [NOTEBOOK_OR_DIR ...]  # strip them in place

A notebook fails when a code cell has outputs or an execution count, or carries papermill's
execution metadata (an executed copy committed by mistake). One line per failing notebook;
exit code 1 if any failed. `--fix` strips them instead (like `nbstripout`).

`structure_problems` holds the rules the notebooks' test enforces (tests/test_notebooks.py).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Calls that mean training logic lives in a notebook instead of the package.
TRAINING_CALLS = ("fit", "backward", "manual_backward", "zero_grad", "training_step")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def output_problems(nb: dict) -> list[str]:
    """Why `nb` is not stripped (empty when it is)."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution_count {cell['execution_count']}")
        if "papermill" in cell.get("metadata", {}) or "execution" in cell.get("metadata", {}):
            problems.append(f"cell {i} has execution metadata")
    if "papermill" in nb.get("metadata", {}):
        problems.append("notebook metadata has papermill's execution record")
    return problems


def strip(nb: dict) -> dict:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
            for key in ("papermill", "execution"):
                cell.get("metadata", {}).pop(key, None)
    nb.get("metadata", {}).pop("papermill", None)
    return nb


def structure_problems(nb: dict) -> list[str]:
    """The notebook rules: a markdown cell first, one `parameters`-tagged cell that is the first
    code cell, code that imports toonclip, and no functions, classes or training calls."""
    problems = []
    cells, code = nb.get("cells", []), code_cells(nb)
    if not cells or cells[0].get("cell_type") != "markdown":
        problems.append("the first cell is not markdown (say what the notebook is for)")
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells tagged 'parameters' (need exactly one)")
    elif code[0] is not tagged[0]:
        problems.append("the 'parameters' cell is not the first code cell")
    imports_toonclip = False
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        text = "\n".join(
            line for line in source(cell).splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            problems.append(f"cell {i}: syntax error: {exc.msg}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                problems.append(f"cell {i} defines a function (put it in the package)")
            elif isinstance(node, ast.ClassDef):
                problems.append(f"cell {i} defines class {node.name} (put it in the package)")
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in TRAINING_CALLS:
                    problems.append(f"cell {i} calls {name}() (training logic belongs in toonclip)")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                imports_toonclip |= any((m or "").split(".")[0] == "toonclip" for m in modules)
    if not imports_toonclip:
        problems.append("never imports toonclip (notebooks call the package)")
    return problems


def find(paths: list[str]) -> list[Path]:
    found = []
    for raw in paths or [str(REPO / "notebooks")]:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fail if a notebook has outputs")
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/)")
    parser.add_argument("--fix", action="store_true", help="strip outputs in place instead")
    args = parser.parse_args(argv)
    paths = find(args.paths)
    bad = 0
    for path in paths:
        try:
            nb = load(path)
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read it as a notebook: {exc}")
            bad += 1
            continue
        problems = output_problems(nb)
        if problems and args.fix:
            path.write_text(
                json.dumps(strip(nb), indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
            )
            print(f"{path}: stripped")
        elif problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            print(
                f"{path}: not stripped: {'; '.join(problems[:3])}{more}; "
                f"run python scripts/check_notebooks.py --fix {path}"
            )
            bad += 1
    if not paths:
        print("no notebooks found")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
