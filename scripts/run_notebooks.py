"""Execute every notebook at a tiny size with papermill (CI runs this: `make notebooks`).

    python scripts/run_notebooks.py --data ../shared/data/comics-heroes [--out DIR] [--only 02]

Tiny values (64 px, a few steps, no pretrained weights) are injected after each notebook's
`parameters` cell; the executed copies and everything they write go to --out (default
/tmp/toonclip-notebooks), never into git. 02's run is handed to 04 as its checkpoint, so 04
does not train again. Prints each notebook's time; exits 1 with one line per failed notebook
(naming it, the failing cell and the error), 2 for a bad command line or kernel.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"
DEFAULT_OUT = Path("/tmp/toonclip-notebooks")
# A 2-member sweep at 64 px, 2 steps each: what 03 runs and compares in CI.
TINY_SWEEP = {
    "description": "notebook CI: two decoders on one backbone, 2 steps at 64 px",
    "grid": {"model.arch": ["unetplusplus", "unet"], "model.encoder": ["mobilenetv3_large_100"]},
    "overrides": {
        "data.size": 64,
        "data.batch_size": 2,
        "trainer.max_steps": 2,
        "trainer.val_every_n_steps": 2,
        "trainer.checkpoint_every_n_steps": 2,
        "trainer.num_sanity_val_steps": 0,
        "grid.n_samples": 2,
        "grid.tile": 64,
        "model.weights": "none",
        "loss.vgg_weights": "none",
    },
}


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def tiny_parameters(name: str, data: Path, out: Path) -> dict:
    """The values injected into notebook `name` (its file stem); every key must be a parameter."""
    run_02 = out / "02_train" / "run"
    common = {"data_root": str(data)}
    table = {
        "01_explore_data": {"size": 64, "n_pairs": 2, "n_augment": 3, "tile": 96},
        "02_train": {
            "experiment": "smoke",
            "size": 64,
            "steps": 4,
            "val_every": 2,
            "log_every": 1,
            "weights": "none",
            "runs_root": str(out / "02_train" / "runs"),
            "run_dir": str(run_02),
        },
        "03_compare_runs": {
            "sweep_dir": str(out / "03_compare_runs" / "sweep"),
            "train_sweep": "always",
            "launcher": "parallel",  # both members at once, one thread each
            "sweep_file": str(out / "03_compare_runs" / "tiny_sweep.yaml"),
            "n_faces": 2,
            "tile": 96,
            "latency_runs": 1,
        },
        "04_export_benchmark": {
            # 02's run when this invocation (or an earlier one) made it; else 04 trains one
            "ckpt": str(run_02) if (run_02 / "checkpoints" / "best.ckpt").is_file() else None,
            "train_experiment": "smoke",
            "train_weights": "none",
            "runs_root": str(out / "04_export_benchmark" / "runs"),
            "out_dir": str(out / "04_export_benchmark" / "export"),
            "calib_n": 4,
            "bench_sizes": "64",
            "bench_runs": 2,
            "n_faces": 3,
            "tile": 96,
            "clip_frames": 8,
            "clip_size": 64,
        },
        "05_distill": {
            "teacher": str(run_02),  # 02's tiny run; run 02 first (the default order does)
            "student_encoder": "mobilenetv3_small_050",
            "experiment": "smoke",
            "steps": 4,
            "weights": "none",
            "runs_root": str(out / "05_distill" / "runs"),
            "latency_runs": 1,
            "clip_frames": 6,
            "tile": 64,
        },
    }
    if name not in table:
        raise KeyError(f"no tiny parameters for it in {Path(__file__).name}; add them there")
    return {**common, **table[name]}


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's `parameters`-tagged cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return {
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign | ast.AnnAssign)
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Name)
            }
    return set()


def select(paths: list[Path], only: list[str] | None) -> list[Path]:
    if not only:
        return paths
    wanted = [w.removesuffix(".ipynb") for item in only for w in item.split(",") if w]
    chosen = [p for p in paths if any(p.stem == w or p.stem.startswith(w + "_") for w in wanted)]
    missing = [
        w for w in wanted if not any(p.stem == w or p.stem.startswith(w + "_") for p in paths)
    ]
    if missing:
        names = ", ".join(p.stem for p in paths)
        raise ValueError(f"--only {','.join(missing)}: no such notebook; have {names}")
    return chosen


def check_kernel() -> str | None:
    """None when the `python3` kernel runs this interpreter, else why not (one line)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    fix = f"run: {sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}"
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return f"no Jupyter kernel named '{KERNEL}'; {fix}"
    exe = spec.argv[0] if spec.argv else ""
    # jupyter_client runs a bare "python" / "python3" as the interpreter that starts it.
    if exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return None
    if Path(exe).absolute() != Path(sys.executable).absolute():
        return f"kernel '{KERNEL}' ({spec.resource_dir}) runs {exe}, not {sys.executable}; {fix}"
    return None


def one_line(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        lines = [s for s in str(exc.evalue).splitlines() if s.strip()] or [""]
        return f"cell In [{exc.exec_count}]: {exc.ename}: {lines[0][:300]}"
    lines = [s for s in str(exc).splitlines() if s.strip()] or [""]
    return f"{type(exc).__name__}: {lines[0][:300]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data set folder (ffhq/, comics_heroes/)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"default {DEFAULT_OUT}")
    parser.add_argument("--only", action="append", help="notebook name or number, e.g. 02")
    parser.add_argument("--cell-timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)

    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    if not (data / "ffhq").is_dir():
        print(f"error: --data {data} has no ffhq/ folder", file=sys.stderr)
        return 2
    if out == REPO or REPO in out.parents:
        print(
            f"error: --out {out} is inside the repository; use a folder outside git",
            file=sys.stderr,
        )
        return 2
    # The kernel inherits this environment: no downloads (weights fall back at once), and
    # Jupyter prefers this environment's kernels over a user-wide one.
    os.environ.update(TOONCLIP_OFFLINE="1", HF_HUB_OFFLINE="1", JUPYTER_PREFER_ENV_PATH="1")
    os.environ.setdefault("TOONCLIP_DATA", str(data))
    reason = check_kernel()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    import papermill as pm
    import yaml

    try:
        paths = select(notebook_paths(), args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print(f"error: no notebooks in {NOTEBOOKS}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    failures, t_all = [], time.perf_counter()
    for path in paths:
        work = out / path.stem  # this notebook's outputs, fresh each time
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            params = tiny_parameters(path.stem, data, out)
            unknown = sorted(set(params) - declared_parameters(path))
            problem = f"not in its parameters cell: {', '.join(unknown)}" if unknown else None
        except (KeyError, ValueError, SyntaxError) as exc:  # no tiny values, unreadable file
            problem = str(exc.args[0] if exc.args else exc)
        if problem:
            failures.append(f"{path.name}: {problem}")
            print(f"FAILED {failures[-1]}", file=sys.stderr, flush=True)
            continue
        if path.stem == "03_compare_runs":
            Path(params["sweep_file"]).write_text(yaml.safe_dump(TINY_SWEEP, sort_keys=False))
        executed = out / path.name
        print(f"{path.name}: running ...", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(path),
                str(executed),
                parameters=params,
                kernel_name=KERNEL,
                cwd=str(NOTEBOOKS),
                progress_bar=False,
                log_output=False,
                execution_timeout=args.cell_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - any failure is reported as one line
            failures.append(f"{path.name}: {one_line(exc)} (executed copy: {executed})")
            print(f"FAILED {failures[-1]}", file=sys.stderr, flush=True)
            continue
        print(f"{path.name}: ok in {time.perf_counter() - t0:.0f} s -> {executed}", flush=True)
    total = time.perf_counter() - t_all
    if failures:
        names = ", ".join(line.split(":")[0] for line in failures)
        print(f"{len(failures)} of {len(paths)} notebooks failed: {names}", file=sys.stderr)
        return 1
    print(f"all {len(paths)} notebooks ran in {total:.0f} s; executed copies in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
