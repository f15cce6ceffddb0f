"""The notebooks: committed stripped, one tagged parameters cell first, no training logic, and
the tiny values CI injects (scripts/run_notebooks.py) match their parameters. Fast: nothing is
executed here (CI executes them with `make notebooks`)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01_explore_data",
    "02_train",
    "03_compare_runs",
    "04_export_benchmark",
    "05_distill",
]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _script("check_notebooks")
runner = _script("run_notebooks")


def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code(*sources: str, tags=(), outputs=None, count=None) -> dict:
    return {
        "cell_type": "code",
        "metadata": {"tags": list(tags)},
        "source": "\n".join(sources),
        "outputs": outputs or [],
        "execution_count": count,
    }


GOOD = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# what it is for"},
        _code("size = 64", tags=["parameters"]),
        _code("from toonclip.config import compose", "cfg = compose([f'data.size={size}'])"),
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_all_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


def test_repo_notebooks_are_stripped():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_notebooks.py")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_fails_on_outputs_and_fix_strips(tmp_path):
    nb = copy.deepcopy(GOOD)
    nb["cells"][2].update(
        outputs=[{"output_type": "stream", "name": "stdout", "text": "hi\n"}], execution_count=3
    )
    clean = tmp_path / "clean.ipynb"
    clean.write_text(json.dumps(GOOD))
    dirty = tmp_path / "dirty.ipynb"
    dirty.write_text(json.dumps(nb))
    script = [sys.executable, str(REPO / "scripts" / "check_notebooks.py")]
    proc = subprocess.run([*script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "dirty.ipynb" in lines[0] and "outputs" in lines[0]
    assert subprocess.run([*script, "--fix", str(dirty)], capture_output=True).returncode == 0
    assert subprocess.run([*script, str(tmp_path)], capture_output=True).returncode == 0
    assert check.output_problems(_nb(dirty)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    assert check.structure_problems(_nb(path)) == []


PARAMS, USES = GOOD["cells"][1], GOOD["cells"][2]


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([PARAMS, USES, _code("x = 2", tags=["parameters"])], "2 cells tagged"),
        ([USES, PARAMS], "not the first code cell"),
        ([USES], "0 cells tagged"),
        ([PARAMS, USES, _code("def f():", "    return 1")], "defines a function"),
        ([PARAMS, USES, _code("class Net:", "    pass")], "defines class Net"),
        ([PARAMS, USES, _code("trainer.fit(model, dm)")], "calls fit()"),
        ([PARAMS, USES, _code("loss.backward()")], "calls backward()"),
        ([PARAMS, USES, _code("f = lambda x: x")], "defines a function"),
        ([PARAMS, _code("import numpy")], "never imports toonclip"),
    ],
)
def test_structure_check_catches(cells, expected):
    nb = copy.deepcopy(GOOD)
    nb["cells"] = nb["cells"][:1] + copy.deepcopy(cells)
    assert check.structure_problems(GOOD) == []
    assert any(expected in p for p in check.structure_problems(nb)), check.structure_problems(nb)


def test_first_cell_must_be_markdown():
    nb = copy.deepcopy(GOOD)
    nb["cells"] = nb["cells"][1:]
    assert any("markdown" in p for p in check.structure_problems(nb))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    """Every knob CI injects exists; the data root defaults to $TOONCLIP_DATA."""
    declared = runner.declared_parameters(path)
    tiny = runner.tiny_parameters(path.stem, Path("/data"), Path("/tmp/out"))
    assert set(tiny) <= declared, sorted(set(tiny) - declared)
    # papermill reads each parameter off its line too (it gives up on a line with two "=")
    papermill = pytest.importorskip("papermill")
    assert set(papermill.inspect_notebook(str(path))) == declared
    params = next(c for c in _nb(path)["cells"] if c["cell_type"] == "code")
    assert 'os.environ.get("TOONCLIP_DATA", "../data/comics-heroes")' in "".join(params["source"])


def test_run_notebooks_select():
    paths = runner.notebook_paths()
    assert [p.stem for p in runner.select(paths, ["02", "04_export_benchmark.ipynb"])] == [
        "02_train",
        "04_export_benchmark",
    ]
    with pytest.raises(ValueError, match="no such notebook"):
        runner.select(paths, ["09"])
