"""`toonclip bench-train [size=128] [batch=4] [steps=20] [warmup=3] [rounds=2] [data_only=false]
[key=value ...]`.

Prints training img/s of the configured network four ways, in one process:
  1. data loading alone (cache -> augmentation -> collate through the train loader), no compute;
  2. the compute ceiling: a plain PyTorch loop (same generator, loss, optimiser, clipping,
     precision, channels_last, compile), batches already on the device, no sync inside the
     timed window; its warm-up seconds (compilation, with model.compile=true);
  3. toonclip's LightningModule under lightning.Trainer, timed as real runs time their steps;
  4. a real `toonclip train` fit of warmup + steps steps through the datamodule's own loader
     (workers, EMA, validation at trainer.val_every_n_steps, checkpoints, start-up): its inner
     loop (summary.json's train_img_per_s) and effective img/s (images / wall s of fit).
Steps 2 and 3 consume the same pre-loaded batches, so data loading is timed apart from compute.
They alternate for `rounds` rounds (swapping which goes first) and each reports its median, which
evens out drift on a busy machine. `data_only=true` measures only 1 (e.g. against
data.num_workers). Other `key=value` go to the training config (e.g. data.root=...,
trainer.precision=..., model.channels_last=true, model.compile=true, trainer.accelerator=gpu,
data.num_workers=8). Without a data folder, synthetic pairs are used. One device. The loops
are in training/bench_loops.py.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toonclip.cli import split_args
from toonclip.config import compose
from toonclip.data.datamodule import PairDataModule
from toonclip.errors import ConfigError
from toonclip.training.bench_loops import ceiling_loop, effective_fit, lightning_loop

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
        "compile": bool(cfg.model.get("compile", False)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data.root = _data_root(cfg, Path(tmp))
        loader_batches, data_img_s = _load_batches(cfg, own)
        result["data_img_per_s"] = round(data_img_s, 1)
        if not own["data_only"]:
            result.update(_compute(cfg, own, loader_batches))
            fit = effective_fit(cfg, own["warmup"] + own["steps"], Path(tmp) / "fit")
            result.update(fit)
            if fit["fit_train_img_per_s"]:
                result["fit_ratio"] = round(
                    fit["fit_train_img_per_s"] / result["plain_img_per_s"], 3
                )
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
    plain, light, warm = [], [], []

    def ceiling() -> None:
        result = ceiling_loop(cfg, batches, own["warmup"], device)
        plain.append(result["img_per_s"])
        warm.append(result["warmup_s"])

    for r in range(own["rounds"]):
        # Alternate which goes first: the second run of a round inherits a warm allocator.
        if r % 2 == 0:
            ceiling()
            light.append(lightning_loop(cfg, batches, own["warmup"]))
        else:
            light.append(lightning_loop(cfg, batches, own["warmup"]))
            ceiling()
    out = {
        "device": str(device),
        "plain_warmup_s": round(max(warm), 2),
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
        f"threads {r['torch_threads']}, {r['num_workers']} loader workers, compile={r['compile']}",
        "| what | img/s |",
        "|---|---|",
        f"| data loading only (decode cache, augment, collate) | {r['data_img_per_s']} |",
    ]
    if "ratio" in r:
        lines += [
            f"| compute ceiling: plain PyTorch loop, batches on the device (median of "
            f"{r['plain_rounds']}; warm-up {r['plain_warmup_s']} s) | {r['plain_img_per_s']} |",
            f"| toonclip LightningModule + Trainer (median of {r['toonclip_rounds']}) | {r['toonclip_img_per_s']} |",
            f"| ratio toonclip / ceiling | {r['ratio']} |",
            f"| toonclip train fit, inside training steps (EMA, logging, checkpoints) | "
            f"{r['fit_train_img_per_s']} (ratio {r.get('fit_ratio', '-')}) |",
            f"| effective: toonclip train fit, {r['images_trained']} images in {r['fit_wall_s']} s "
            f"(loader, validation, checkpoints, start-up) | {r['effective_img_per_s']} |",
        ]
    return "\n".join(lines)
