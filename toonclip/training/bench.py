"""`toonclip bench-train [size=128] [batch=4] [steps=20] [warmup=3] [rounds=2] [data_only=false]
[key=value ...]`.

Prints training img/s of the configured network four ways, in one process:
  1. data loading alone (cache -> augmentation -> collate through the train loader), no compute;
  2. a plain PyTorch loop (same generator, loss, optimiser, clipping, precision);
  3. toonclip's LightningModule under lightning.Trainer;
  4. effective: a real `toonclip train` fit of warmup + steps steps through the datamodule's own
     loader (workers, validation at trainer.val_every_n_steps, checkpoints, start-up included):
     images trained / wall seconds of trainer.fit, as summary.json's effective_img_per_s.
Steps 2 and 3 consume the same pre-loaded batches, so data loading is timed apart from compute.
They alternate for `rounds` rounds (swapping which goes first) and each reports its median, which
evens out drift on a busy machine. `data_only=true` measures only 1 (e.g. against
data.num_workers). Other `key=value` go to the training config (e.g. data.root=...,
trainer.precision=..., model.channels_last=true, trainer.accelerator=gpu, data.num_workers=8).
Without a data folder, synthetic pairs are used. Everything runs on one device.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from toonclip.cli import split_args
from toonclip.config import compose
from toonclip.data.datamodule import PairDataModule
from toonclip.errors import ConfigError
from toonclip.training.callbacks import Throughput
from toonclip.training.module import ToonModule

OWN = {
    "size": 128,
    "batch": 4,
    "steps": 20,
    "warmup": 3,
    "rounds": 2,
    "threads": 0,
    "out": "",
    "data_only": False,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(precision: str, device: torch.device):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def plain_loop(cfg, batches: list[dict], warmup: int, device: torch.device) -> float:
    """img/s of a hand-written loop over `batches` (uint8 batches, moved and converted here)."""
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    module = ToonModule(cfg).to(device)  # the same generator and loss objects, no Trainer
    gen, loss_fn = module.generator, module.loss
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    gen.to(memory_format=fmt).train()
    opt = instantiate(cfg.optim.optimizer)(gen.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision.startswith("16"))
    images, seconds = 0, 0.0
    for i, batch in enumerate(batches):
        _sync(device)
        t0 = time.perf_counter()
        face = batch["face"].to(device).float().div_(255).contiguous(memory_format=fmt)
        cartoon = batch["cartoon"].to(device).float().div_(255).contiguous(memory_format=fmt)
        with _autocast(cfg.trainer.precision, device):
            total, _ = loss_fn(gen(face), cartoon)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.trainer.gradient_clip_val:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(gen.parameters(), cfg.trainer.gradient_clip_val)
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= warmup:
            seconds += time.perf_counter() - t0
            images += face.shape[0]
    return images / seconds


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
    """A real `toonclip train` run of `steps` steps into `run_dir`; its summary's speed figures."""
    from toonclip.training.run import train
    from toonclip.training.summary import read_summary

    cfg = copy.deepcopy(cfg)
    cfg.trainer.max_steps = steps
    cfg.trainer.devices, cfg.trainer.strategy = 1, "auto"
    summary = read_summary(train(cfg, run_dir) / "summary.json")
    return {k: summary.get(k) for k in ("effective_img_per_s", "fit_wall_s", "images_trained")}


def _parse_own(opts: dict) -> dict:
    own = {}
    for key, default in OWN.items():
        value = opts.pop(key, default)
        if isinstance(default, bool) and isinstance(value, str):
            own[key] = value.lower() in ("1", "true", "yes")
        else:
            own[key] = type(default)(value)
    return own


def _data_root(cfg, tmp: Path) -> str:
    if Path(cfg.data.root).is_dir():
        return cfg.data.root
    from toonclip.data.synthetic import make_pairs  # no data set here: the benchmark still runs

    return str(make_pairs(tmp / "pairs", n=16, size=256))


def cli(argv: list[str]) -> int:
    positionals, opts = split_args(argv)
    if positionals:
        raise ConfigError(f"unexpected argument '{positionals[0]}'; options are key=value")
    own = _parse_own(opts)
    overrides = [f"{k}={v}" for k, v in opts.items()]
    overrides += [
        f"data.size={own['size']}",
        f"data.batch_size={own['batch']}",
        "model.weights=none",
        "loss.vgg_weights=none",
        "optim.scheduler=null",
    ]
    cfg = compose(overrides)
    if own["threads"]:
        torch.set_num_threads(own["threads"])
    result = {
        "arch": cfg.model.arch,
        "encoder": cfg.model.encoder,
        "size": own["size"],
        "batch": own["batch"],
        "timed_steps": own["steps"],
        "warmup_steps": own["warmup"],
        "rounds": own["rounds"],
        "num_workers": cfg.data.num_workers,
        "precision": cfg.trainer.precision,
        "channels_last": bool(cfg.model.channels_last),
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data.root = _data_root(cfg, Path(tmp))
        loader_batches, data_img_s = _load_batches(cfg, own)
        result["data_img_per_s"] = round(data_img_s, 1)
        if not own["data_only"]:
            result.update(_compute(cfg, own, loader_batches))
            fit = effective_fit(cfg, own["warmup"] + own["steps"], Path(tmp) / "fit")
            result.update(fit)
    print(_table(result))
    if own["out"]:
        Path(own["out"]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _load_batches(cfg, own: dict) -> tuple[list[dict], float]:
    """warmup + steps batches from the train loader, and img/s over the last `steps` of them."""
    dm = PairDataModule(**cfg.data)
    dm.setup("fit")
    n = own["warmup"] + own["steps"]
    batches, t0 = [], time.perf_counter()
    while len(batches) < n:
        for batch in dm.train_dataloader():  # persistent workers: started once
            batches.append(batch)
            if len(batches) == own["warmup"]:
                t0 = time.perf_counter()  # worker start-up is not loading throughput
            if len(batches) == n:
                break
    return batches, own["steps"] * own["batch"] / (time.perf_counter() - t0)


def _compute(cfg, own: dict, batches: list[dict]) -> dict:
    """The plain loop and the LightningModule on the same batches, alternating for `rounds`."""
    accel = cfg.trainer.accelerator
    device = torch.device(
        "cuda"
        if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    plain, light = [], []
    for r in range(own["rounds"]):
        # Alternate which goes first: the second run of a round inherits a warm allocator.
        if r % 2 == 0:
            plain.append(plain_loop(cfg, batches, own["warmup"], device))
            light.append(lightning_loop(cfg, batches, own["warmup"]))
        else:
            light.append(lightning_loop(cfg, batches, own["warmup"]))
            plain.append(plain_loop(cfg, batches, own["warmup"], device))
    out = {
        "device": str(device),
        "plain_img_per_s": round(statistics.median(plain), 2),
        "toonclip_img_per_s": round(statistics.median(light), 2),
        "plain_rounds": [round(x, 2) for x in plain],
        "toonclip_rounds": [round(x, 2) for x in light],
    }
    out["ratio"] = round(out["toonclip_img_per_s"] / out["plain_img_per_s"], 3)
    return out


def _table(r: dict) -> str:
    lines = [
        f"bench-train: {r['arch']} / {r['encoder']}, {r['size']} px, batch {r['batch']}, "
        f"{r['timed_steps']} timed steps after {r['warmup_steps']} warm-up, {r['rounds']} rounds, "
        f"{r.get('device', '-')}, {r['precision']}, channels_last={r['channels_last']}, "
        f"threads {r['torch_threads']}, {r['num_workers']} loader workers",
        "| what | img/s |",
        "|---|---|",
        f"| data loading only (decode cache, augment, collate) | {r['data_img_per_s']} |",
    ]
    if "ratio" in r:
        lines += [
            f"| plain PyTorch loop (median of {r['plain_rounds']}) | {r['plain_img_per_s']} |",
            f"| toonclip LightningModule + Trainer (median of {r['toonclip_rounds']}) | {r['toonclip_img_per_s']} |",
            f"| ratio toonclip / plain | {r['ratio']} |",
            f"| effective: toonclip train fit, {r['images_trained']} images in {r['fit_wall_s']} s "
            f"(loader, validation, checkpoints, start-up) | {r['effective_img_per_s']} |",
        ]
    return "\n".join(lines)
