"""Checks of a composed train config, run before a run folder, cache or checkpoint is made.

Each failure is one line naming the option, the bad value and what to use instead. A typo then
costs nothing: no half-made run folder that the corrected command would refuse as a started run.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from toonclip.errors import ConfigError
from toonclip.losses.adversarial import GAN_LOSSES, patch_map_size
from toonclip.losses.perceptual import pick_criterion
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


# Boolean options, and the one other word each accepts (Lightning's deterministic="warn").
FLAGS = {
    "model.residual": None,
    "model.channels_last": None,
    "model.compile": None,
    "data.skip_bad": None,
    "data.persistent_workers": None,
    "data.pin_memory": None,
    "trainer.benchmark": None,
    "trainer.deterministic": "warn",
}


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


def _nonnegative(cfg: DictConfig, key: str, advice: str) -> float:
    """The number >= 0 at `key` (0 when unset), or ConfigError '{key}={value}: {advice}'."""
    value = OmegaConf.select(cfg, key, default=0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{key}={value}: {advice}")
    return float(value)


# The `_target_`s that fit builds (after the run folder exists), each with a valid example.
TARGETS = {
    "optim.optimizer": "torch.optim.AdamW",
    "optim.scheduler": "toonclip.training.schedule.warmup_cosine",
    "loss": "toonclip.losses.perceptual.PerceptualStyleLoss",
}


def check_targets(cfg: DictConfig) -> None:
    """Raise ConfigError for a `_target_` that does not import (a mistyped dotted path)."""
    for key, example in TARGETS.items():
        target = OmegaConf.select(cfg, f"{key}._target_", default=None)
        if target is None:
            continue
        try:
            get_object(str(target))
        except ImportError:
            raise ConfigError(
                f"{key}._target_={target}: no class or function by that name; use its full "
                f"dotted path, e.g. {example}"
            ) from None


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
    fused = OmegaConf.select(cfg, "optim.optimizer.fused", default=None)
    if fused is not None and not isinstance(fused, bool):
        raise ConfigError(
            f"optim.optimizer.fused={fused}: use true (one fused kernel, GPU), false or null"
        )
    # A mistyped flag is a string, and any non-empty string is truthy: `model.channels_last=fals`
    # would turn the option on.
    for key in FLAGS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, bool) and value != FLAGS[key]:
            extra = f", or {key}={FLAGS[key]}" if FLAGS[key] else ""
            raise ConfigError(f"{key}={value}: use {key}=true or {key}=false{extra}")
    for key in (
        "loss.perceptual_weight",
        "loss.style_weight",
        "loss.pixel_weight",
        "loss.ssim_weight",
        "loss.edge_weight",
    ):
        _nonnegative(cfg, key, "use a number >= 0 (0 turns the term off)")
    for key in ("criterion", "pixel_criterion"):
        pick_criterion(key, OmegaConf.select(cfg, f"loss.{key}", default="l1"))
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
    _nonnegative(
        cfg,
        "model.residual_blur",
        "use a Gaussian sigma >= 0 in pixels, e.g. model.residual_blur=1.0 (0: add back the face "
        "as it is)",
    )
    _nonnegative(cfg, "model.drop_path", "use a rate in [0, 1), e.g. model.drop_path=0.1 (0: off)")
    if OmegaConf.select(cfg, "model.decoder_width") is not None:
        _positive(cfg, "model.decoder_width", "(a multiplier of decoder channels, e.g. 0.25)")
    if _nonnegative(cfg, "temporal.weight", "use a number >= 0 (0 turns the term off)"):
        _positive(cfg, "temporal.max_shift", "(pixels, e.g. temporal.max_shift=4)")
    check_targets(cfg)
    check_adversarial(cfg)
    check_distill(cfg)


def check_adversarial(cfg: DictConfig) -> None:
    """The optional discriminator's options; none but the weight matter while it is 0 (off)."""
    weight = _nonnegative(
        cfg, "adversarial.weight", "use a number >= 0, e.g. 0.05 (0 turns the term off)"
    )
    if not weight:
        return
    if cfg.get("distill"):
        raise ConfigError(
            f"adversarial.weight={weight} with distillation: not supported (the student learns "
            "the teacher's outputs, the discriminator would judge them against real cartoons); "
            "use adversarial.weight=0, or train the teacher with the term"
        )
    _positive(cfg, "adversarial.lr", "(the discriminator's Adam, e.g. adversarial.lr=2e-4)")
    kind = OmegaConf.select(cfg, "adversarial.loss", default="lsgan")
    if kind not in GAN_LOSSES:
        raise ConfigError(f"adversarial.loss={kind}: use one of {', '.join(GAN_LOSSES)}")
    _int(cfg, "adversarial.ndf", 1, "(the first layer's width, e.g. adversarial.ndf=32)")
    layers = _int(cfg, "adversarial.n_layers", 1, "(strided convs, e.g. adversarial.n_layers=3)")
    down = _int(cfg, "adversarial.downsample", 1, "(1: full size; 2: half, e.g. with n_layers=2)")
    _int(cfg, "adversarial.start_step", 0, "(0: from the first step)")
    betas = OmegaConf.select(cfg, "adversarial.betas", default=[0.5, 0.999])
    if not (
        OmegaConf.is_list(betas)
        and len(betas) == 2
        and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
    ):
        raise ConfigError(f"adversarial.betas={betas}: use two numbers in [0, 1), e.g. [0.5,0.999]")
    size = int(cfg.data.size)
    if patch_map_size(size, layers, down) < 1:
        fits = [n for n in range(1, 8) if patch_map_size(size, n, down) >= 1]
        fix = f"use adversarial.n_layers<={max(fits)}" if fits else "use a smaller downsample"
        raise ConfigError(
            f"adversarial.n_layers={layers}, downsample={down} with data.size={size}: the "
            f"discriminator's patch map would be empty; {fix}"
        )


def check_distill(cfg: DictConfig) -> None:
    """The teacher exists and the weights make sense; unpaired faces only when distilling."""
    extra = OmegaConf.select(cfg, "data.extra_faces", default=None)
    distill = cfg.get("distill")
    if not distill:
        if extra:
            raise ConfigError(
                f"data.extra_faces={extra}: unpaired faces have no target outside distillation; "
                "use toonclip distill teacher=RUN data.extra_faces=DIR, or drop the option"
            )
        return
    teacher = distill.get("teacher")
    if not teacher:
        raise ConfigError("distill needs a teacher: add teacher=RUN_DIR (or a .ckpt file)")
    if not Path(str(teacher)).exists():
        raise ConfigError(
            f"teacher={teacher} does not exist; pass a run folder of toonclip train or its "
            "checkpoints/best.ckpt"
        )
    for key in ("distill.teacher_weight", "distill.paired_weight"):
        _nonnegative(cfg, key, "use a number >= 0 (0 turns the term off)")
    if not distill.get("teacher_weight") and not distill.get("paired_weight"):
        raise ConfigError(
            "distill.teacher_weight and distill.paired_weight are both 0: nothing to learn from"
        )
    if extra and not Path(str(extra)).is_dir():
        raise ConfigError(f"data.extra_faces={extra} is not a folder; pass a folder of faces")
