"""Scoring a model on face/cartoon pairs against the identity baseline (`toonclip eval`).

From Python: `score(pred, target)` for PSNR/SSIM/L1 per image, `evaluate(model_fn, faces,
cartoons)` for per-pair rows and means with the identity figures and the gain over them.
"""

from toonclip.evaluation.metrics import PSNR_CAP_DB, evaluate, score

__all__ = ["PSNR_CAP_DB", "evaluate", "score"]
