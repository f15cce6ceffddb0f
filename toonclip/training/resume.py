"""What a resume may not change: the network its checkpoint holds.

A checkpoint's weights fit only the architecture, skip and discriminator they were trained with;
a resume that overrides one of those fails here, one line, before Lightning loads the state.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from toonclip.errors import ConfigError


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ConfigError when `cfg` changes what the checkpoint in `run_dir` was trained with."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = OmegaConf.load(saved_path)
    # The discriminator and its optimiser are in the checkpoint or not: the term cannot be
    # switched on or off across a resume (its weight, loss and lr may change; its widths, below,
    # may not).
    before = bool(OmegaConf.select(saved, "adversarial.weight", default=0))
    now = bool(OmegaConf.select(cfg, "adversarial.weight", default=0))
    if before != now:
        was = "with" if before else "without"
        raise ConfigError(
            f"adversarial.weight={OmegaConf.select(cfg, 'adversarial.weight', default=0)}: the run "
            f"in {run_dir} was trained {was} the adversarial term, and a resume keeps it; drop "
            "the override, or start a new run (without resume)"
        )
    keys = (
        "model.arch",
        "model.encoder",
        "model.residual",
        "model.residual_blur",
        "model.decoder_width",
        "model.decoder_norm",
    )
    if now:
        keys += ("adversarial.ndf", "adversarial.n_layers", "adversarial.downsample")
    # Runs from before model.residual_blur existed trained with the face itself (0.0) added back;
    # before model.decoder_norm, with smp's batchnorm.
    implied = {"model.residual_blur": 0.0, "model.decoder_norm": "batchnorm"}
    for key in keys:
        before = OmegaConf.select(saved, key, default=implied.get(key))
        now = OmegaConf.select(cfg, key, default=implied.get(key))
        if before is not None and before != now:
            raise ConfigError(
                f"{key}={now}: the run in {run_dir} was trained with {key}={before}, and a resume "
                "keeps the network; drop the override, or start a new run (without resume)"
            )
