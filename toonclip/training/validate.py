"""Checks of a composed train config, run before a run folder, cache or checkpoint is made.

Each failure is one line naming the option, the bad value and what to use instead. A typo then
costs nothing: no half-made run folder that the corrected command would refuse as a started run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from toonclip.errors import ConfigError
from toonclip.models import weights as W

# lightning.fabric.connector._PRECISION_INPUT_STR (the values Trainer(precision=...) accepts).
PRECISIONS = (
    "32-true",
    "32",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)


def _int(cfg: DictConfig, key: str, minimum: int, hint: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value}: use an integer >= {minimum} {hint}".rstrip())
    return value


def _positive(cfg: DictConfig, key: str, hint: str) -> float:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{key}={value}: use a number > 0 {hint}".rstrip())
    return float(value)


def check_train_values(cfg: DictConfig) -> None:
    """Raise ConfigError for a value that would otherwise fail inside Lightning, smp or torch."""
    size = _int(cfg, "data.size", 32, "(a multiple of 32, e.g. data.size=128)")
    if size % 32:
        raise ConfigError(
            f"data.size={size}: must be a multiple of 32 (the encoder downsamples 32x), "
            f"e.g. data.size={max(32, size // 32 * 32)}"
        )
    batch = _int(cfg, "data.batch_size", 1, "(e.g. data.batch_size=4)")
    # BatchNorm needs more than one value per channel: at 32 px the encoder's last stage is 1x1.
    if batch * (size // 32) ** 2 < 2:
        raise ConfigError(
            f"data.batch_size={batch} with data.size={size}: BatchNorm needs more than one value "
            "per channel at the encoder's 1x1 stage; use data.batch_size>=2 or data.size>=64"
        )
    _int(cfg, "data.num_workers", 0, "(0 loads in the training process)")
    where = OmegaConf.select(cfg, "data.augment.device", default="cpu")
    if where not in ("cpu", "gpu"):
        raise ConfigError(
            f"data.augment.device={where}: use cpu (albumentations in the loader) or gpu "
            "(whole batches on the training device)"
        )
    steps = OmegaConf.select(cfg, "trainer.max_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps == 0 or steps < -1:
        raise ConfigError(f"trainer.max_steps={steps}: use a positive integer (or -1: no limit)")
    _int(cfg, "trainer.val_every_n_steps", 1, "")
    _int(cfg, "trainer.checkpoint_every_n_steps", 1, "")
    precision = str(cfg.trainer.precision)
    if precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision}: use one of 32-true, bf16-mixed, 16-mixed "
            "(bf16-mixed on recent GPUs)"
        )
    _positive(cfg, "optim.optimizer.lr", "(e.g. optim.optimizer.lr=1e-3)")
    for key in (
        "loss.perceptual_weight",
        "loss.style_weight",
        "loss.pixel_weight",
        "loss.ssim_weight",
    ):
        value = OmegaConf.select(cfg, key, default=0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key}={value}: use a number >= 0 (0 turns the term off)")
    for key in ("loss.vgg_weights", "model.weights"):
        value = OmegaConf.select(cfg, key, default="auto")
        if str(value) not in W.POLICIES and not Path(str(value)).is_file():
            raise ConfigError(
                f"{key}={value}: use one of {', '.join(W.POLICIES)} or a path to a weights file"
            )
    decay = OmegaConf.select(cfg, "ema.decay", default=None)
    if decay is not None and (
        isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1
    ):
        raise ConfigError(f"ema.decay={decay}: use a number in [0, 1), e.g. 0.99, or null (off)")


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A resume keeps the network: the checkpoint's weights only fit the architecture they came from."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = OmegaConf.load(saved_path)
    for key in ("model.arch", "model.encoder", "model.residual"):
        before, now = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if before is not None and before != now:
            raise ConfigError(
                f"{key}={now}: the run in {run_dir} was trained with {key}={before}, and a resume "
                "keeps the network; drop the override, or start a new run (without resume)"
            )
