"""summary.json: what a run is, how it did, and how it was made."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path

from toonclip.training.val_history import FINAL_KEYS, val_results

PACKAGES = (
    "toonclip",
    "torch",
    "torchvision",
    "lightning",
    "segmentation-models-pytorch",
    "timm",
    "albumentations",
    "hydra-core",
    "torchmetrics",
)


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """HEAD of the repository holding this package (plus '-dirty' with uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_summary(path: Path, data: dict) -> None:
    """Write atomically, so a reader (sweep index, compare) never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_summary(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def start_record(cfg, run_dir: Path) -> dict:
    """The summary of a run that has just started."""
    return {
        "name": run_dir.name,
        "arch": cfg.model.arch,
        "encoder": cfg.model.encoder,
        "status": "running",
        "error": None,
        "size": cfg.data.size,
        "run_dir": str(run_dir),
        "started": datetime.now().isoformat(timespec="seconds"),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def model_record(module, cfg) -> dict:
    """Parameters, GFLOPs at the training size, and where the pretrained weights came from."""
    from toonclip.models import count_parameters
    from toonclip.models.cost import count_gflops_direct

    loss_weights = getattr(module.loss, "weights_record", None)
    return {
        "params": count_parameters(module.generator),
        "gflops": round(
            count_gflops_direct(module.generator, cfg.summary.flops_size or cfg.data.size), 3
        ),
        "weights": {
            "encoder": module.generator.weights_record.to_dict(),
            "vgg16": loss_weights.to_dict() if loss_weights else None,
        },
    }


def record_failure(
    summary: dict, exc: BaseException, run_dir: Path, seconds: float, cause: str | None = None
) -> None:
    """Write the summary of a run that raised `exc`: failed, or interrupted (Ctrl-C, SIGTERM).
    `cause`: what failed first, when that was another DDP rank."""
    # SIGTERM from a scheduler: Lightning raises SIGTERMException, a SystemExit.
    stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
    message = (str(exc).splitlines() or [""])[0][:500] or type(exc).__name__
    if stopped:
        message = f"stopped ({type(exc).__name__}); continue with: toonclip train run_dir={run_dir} resume=true"
    elif cause and cause not in message:
        message = f"{cause} (its error is in the output); here: {message}"[:500]
    summary.update(
        status="interrupted" if stopped else "failed", error=message, train_time_s=round(seconds, 1)
    )
    # What the run reached before it stopped (a long run stopped by hand once val PSNR levels
    # off is the usual case), so compare and eval can read it as for a finished run.
    results = val_results(run_dir / "metrics.csv")
    if results["final"] is not None:
        summary.update(results)
    write_summary(run_dir / "summary.json", summary)


def speed(throughput, world_size: int, fit_wall_s: float | None) -> dict:
    """Training speed over all ranks: `train_img_per_s` inside optimiser steps (the inner loop);
    `effective_img_per_s` = `images_trained` / `fit_wall_s`, the wall time of trainer.fit with
    start-up, validation, checkpoints and epoch boundaries included."""
    inner = throughput.img_per_s
    images = throughput.images_trained * world_size
    return {
        "train_img_per_s": round(inner * world_size, 2) if inner else None,
        "images_trained": images,
        "fit_wall_s": round(fit_wall_s, 2) if fit_wall_s else None,
        "effective_img_per_s": round(images / fit_wall_s, 2) if fit_wall_s and images else None,
    }


def result_lines(summary: dict) -> str:
    """The lines `toonclip train` prints when a run finishes."""
    run = Path(summary["run_dir"])
    best, final, ident, gain = (summary.get(k) or {} for k in ("best", "final", "identity", "gain"))

    def metrics(d: dict) -> str:
        return "  ".join(f"{k} {d.get(k)}" for k in FINAL_KEYS)

    def signed(value, unit: str) -> str:
        return "n/a" if value is None else f"{value:+.4g}{unit}"

    return (
        f"\nrun folder: {run}\n  grids:    {run / 'grids'} (latest.png)\n"
        f"  best:     val/psnr {best.get('val/psnr')}  val/ssim {best.get('val/ssim')}"
        f" (step {best.get('step')})\n"
        f"  final:    {metrics(final)} (step {final.get('step')})\n"
        f"  identity: {metrics(ident)} (the face itself as the prediction)\n"
        f"  gain:     PSNR {signed(gain.get('psnr'), ' dB')}, SSIM {signed(gain.get('ssim'), '')}"
        " (final minus identity)\n"
        + (
            f"  val PSNR: moved at most {swing['max_change_db']:.2f} dB between the "
            f"{swing['validations']} validations from step {swing['after_step']} on\n"
            if (swing := summary.get("stability"))
            else ""
        )
        + (
            f"  teacher:  val/psnr {teacher['psnr']}  val/ssim {teacher['ssim']} (student minus "
            f"teacher: {signed(-teacher['drop_psnr'] if teacher['drop_psnr'] is not None else None, ' dB')})\n"
            if (teacher := summary.get("teacher"))
            else ""
        )
        + f"  speed:    {summary.get('train_img_per_s')} img/s in training steps, "
        f"{summary.get('effective_img_per_s')} img/s effective ({summary.get('images_trained')}"
        f" images in {summary.get('fit_wall_s')} s of fit)\n"
        f"  weights:  {run / 'checkpoints' / 'best.ckpt'}"
    )
