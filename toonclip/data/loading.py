"""DataLoader pieces: fixed-size epochs over tiny data sets, and one thread per loader worker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """`num_samples` dataset indices per epoch: shuffled whole passes over the `n` items,
    concatenated and cut, so every item appears floor or ceil(num_samples / n) times an epoch.

    Like BasicSR's `dataset_enlarge_ratio`: with 81 pairs and batch 16 an epoch would otherwise be
    5 steps, and every epoch boundary costs a loader restart (worker refill) and epoch-end hooks.
    The order depends only on (seed, epoch), never on the global RNG, so every DDP rank draws the
    same list and Lightning's DistributedSamplerWrapper can deal it out in disjoint shards.
    """

    def __init__(self, n: int, num_samples: int, seed: int = 0):
        if n <= 0 or num_samples <= 0:
            raise ValueError(
                f"EpochSampler needs n > 0 and num_samples > 0 (got {n}, {num_samples})"
            )
        self.n, self.num_samples, self.seed = int(n), int(num_samples), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (directly, or through its DDP wrapper)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        passes = -(-self.num_samples // self.n)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(passes)])
        return iter(order[: self.num_samples].tolist())


def collate_pairs(items: list[dict]) -> dict[str, torch.Tensor]:
    """Batch PairDataset items: "face", "cartoon" (N, 3, H, W) uint8 in channels-last memory
    (NHWC, as the images were decoded), "index" (N,) int64, and "paired" (N,) bool when the
    items carry it (distillation with unpaired faces).

    Stacked with numpy, on one thread: the items are (3, H, W) views of HWC images, and
    torch.stack copies them with all intra-op threads. Measured on a busy 2-core machine, 16 at
    256 px took ~190 ms with 2 threads (OpenMP threads waiting for a busy core) and 3 ms with 1;
    np.stack is one memcpy (< 1 ms). The module converts to float and to its memory format on
    the device (ToonModule.on_after_batch_transfer).
    """
    batch = {
        k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in ("face", "cartoon")
    }
    batch["index"] = torch.tensor([int(it["index"]) for it in items])
    if "paired" in items[0]:
        batch["paired"] = torch.tensor([bool(it["paired"]) for it in items])
    return batch


def global_seed() -> int:
    """The seed `lightning.seed_everything` set (PL_GLOBAL_SEED), the same on every rank; else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def worker_init(worker_id: int) -> None:
    """Each DataLoader worker runs OpenCV and torch single-threaded.

    Workers are the parallelism: left alone, OpenCV starts a thread pool as large as the machine
    in every worker (15 workers x 16 threads on a 16-core host), and the threads fight each other
    and the training process for cores. torch's worker loop already sets 1 intra-op thread; it is
    set again here so the contract does not depend on that. When `seed_everything(workers=True)`
    asked for seeded workers, Lightning's own worker_init_fn (which this one replaces) still runs.
    """
    cv2.setNumThreads(0)  # 0: no OpenCV thread pool at all, every call runs on the worker
    torch.set_num_threads(1)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
