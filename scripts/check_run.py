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
    if problems:
        print(f"run folder {run} is incomplete: {', '.join(problems)}", file=sys.stderr)
        return 1
    best = summary.get("best", {})
    print(
        f"run folder OK: {run} (val/psnr {best.get('val/psnr')}, val/ssim {best.get('val/ssim')}, "
        f"{summary.get('train_img_per_s')} img/s, encoder weights {summary['weights']['encoder']['loaded']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
