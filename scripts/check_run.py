"""Check that a finished run folder holds what `toonclip train` promises (used by CI's smoke run)."""

import json
import sys
from pathlib import Path

REQUIRED = (
    "config.yaml",
    "summary.json",
    "metrics.csv",
    "val_files.txt",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "grids/latest.png",
)


def main(run_dir: str) -> int:
    run = Path(run_dir)
    missing = [name for name in REQUIRED if not (run / name).is_file()]
    summary = (
        json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    )
    problems = missing + (
        [f"status={summary.get('status')}"] if summary.get("status") != "finished" else []
    )
    if not list((run / "tb").glob("events.out.tfevents.*")):
        problems.append("tb/ has no TensorBoard events")
    for key in ("final", "identity"):  # every run ends with a validation and its baseline
        if not (summary.get(key) or {}).get("val/psnr"):
            problems.append(f"summary.json has no {key} val/psnr")
    if not summary.get("effective_img_per_s"):
        problems.append("summary.json has no effective_img_per_s")
    if problems:
        print(f"run folder {run} is incomplete: {', '.join(problems)}", file=sys.stderr)
        return 1
    best, final, identity = summary["best"], summary["final"], summary["identity"]
    print(
        f"run folder OK: {run} (best val/psnr {best.get('val/psnr')}, final val/psnr "
        f"{final['val/psnr']} vs identity {identity['val/psnr']}, val/ssim {final['val/ssim']} vs "
        f"{identity['val/ssim']}; {summary.get('train_img_per_s')} img/s in steps, "
        f"{summary['effective_img_per_s']} img/s effective; "
        f"encoder weights {summary['weights']['encoder']['loaded']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
