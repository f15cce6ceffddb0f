"""The training loops that `toonclip bench-train` times (training/bench.py is the command).

- `ceiling_loop`: the compute ceiling, as issue 9 measured it: the same generator, loss and
  optimiser in a hand-written loop, the batches already on the device and converted, the timed
  steps run back to back with one sync at each end (a sync per step would leave the GPU idle
  while the host launches the next step, and so understate the ceiling).
- `lightning_loop`: toonclip's LightningModule under lightning.Trainer on the same batches
  (from host memory, through Lightning's own transfer), timed by the Throughput callback that
  real runs use.
- `effective_fit`: a real `toonclip train` run; its summary's inner-loop and effective figures.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import lightning as L
import torch

from toonclip.training.callbacks import Throughput
from toonclip.training.module import ToonModule


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(precision: str, device: torch.device):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def ceiling_loop(cfg, batches: list[dict], warmup: int, device: torch.device) -> dict:
    """{"img_per_s", "warmup_s"} of a plain loop over `batches` (uint8 (N, 3, H, W) pairs).

    `warmup_s` is the wall time of the first `warmup` steps: with `model.compile=true` it holds
    the compilation. `configure_model` applies channels_last and torch.compile as in training.
    """
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    module = ToonModule(cfg).to(device)  # the same generator and loss objects, no Trainer
    module.configure_model()
    gen, loss_fn = module.generator, module.loss
    gen.train()
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    pairs = [
        tuple(
            batch[key].to(device).float().div_(255).contiguous(memory_format=fmt)
            for key in ("face", "cartoon")
        )
        for batch in batches
    ]
    opt = instantiate(cfg.optim.optimizer)(gen.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision.startswith("16"))
    clip = cfg.trainer.gradient_clip_val

    def step(face: torch.Tensor, cartoon: torch.Tensor) -> None:
        with _autocast(cfg.trainer.precision, device):
            total, _ = loss_fn(gen(face), cartoon)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(gen.parameters(), clip)
        scaler.step(opt)
        scaler.update()

    def timed(chunk) -> float:
        sync(device)
        t0 = time.perf_counter()
        for face, cartoon in chunk:
            step(face, cartoon)
        sync(device)
        return time.perf_counter() - t0

    warmup_s = timed(pairs[:warmup])
    seconds = timed(pairs[warmup:])
    images = sum(face.shape[0] for face, _ in pairs[warmup:])
    return {"img_per_s": images / seconds, "warmup_s": warmup_s}


class _Replay:
    """An iterable over pre-loaded batches (a plain list would be read as several loaders)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return (dict(b) for b in self.batches)  # copies: the module converts batches in place


def lightning_loop(cfg, batches: list[dict], warmup: int) -> float:
    torch.manual_seed(cfg.seed)
    module = ToonModule(cfg)
    meter = Throughput(warmup=warmup)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        callbacks=[meter],
    )
    trainer.fit(module, train_dataloaders=_Replay(batches))
    return meter.img_per_s


def effective_fit(cfg, steps: int, run_dir: Path) -> dict:
    """A real `toonclip train` run of `steps` steps into `run_dir`; its summary's speed figures
    (`fit_train_img_per_s`: its inner loop, EMA, logging and checkpoints included)."""
    from toonclip.training.run import train
    from toonclip.training.summary import read_summary

    cfg = copy.deepcopy(cfg)
    cfg.trainer.max_steps = steps
    cfg.trainer.devices, cfg.trainer.strategy = 1, "auto"
    summary = read_summary(train(cfg, run_dir) / "summary.json")
    out = {k: summary.get(k) for k in ("effective_img_per_s", "fit_wall_s", "images_trained")}
    out["fit_train_img_per_s"] = summary.get("train_img_per_s")
    return out
