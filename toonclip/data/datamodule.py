"""Dataset and LightningDataModule over cached face/cartoon pairs."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from toonclip.data.augment import PairAugment
from toonclip.data.cache import build_cache
from toonclip.data.io import resize
from toonclip.data.loading import EpochSampler, collate_pairs, global_seed, worker_init
from toonclip.data.pairs import Pair, find_pairs, split_pairs

log = logging.getLogger(__name__)


def _as_is(face: np.ndarray, cartoon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return face, cartoon


class PairDataset(Dataset):
    """Items: {"face", "cartoon"}: (3, size, size) uint8 tensors (RGB; views of HWC arrays);
    "index": int; with `paired` given, also "paired": bool (False: an unpaired face whose
    "cartoon" is the face itself, a placeholder only a teacher's output replaces; see distill).
    Batched by loading.collate_pairs.

    Images stay uint8 until they reach the model's device (4x less to copy); the LightningModule
    converts them to float in [0, 1].
    """

    def __init__(
        self,
        faces: np.ndarray,
        cartoons: np.ndarray,
        augment: PairAugment,
        paired: np.ndarray | None = None,
    ):
        self.faces, self.cartoons, self.augment = faces, cartoons, augment
        self.paired = paired

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict:
        face, cartoon = self.augment(self.faces[i], self.cartoons[i])
        item = {
            "face": torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1),
            "cartoon": torch.from_numpy(np.ascontiguousarray(cartoon)).permute(2, 0, 1),
            "index": i,
        }
        if self.paired is not None:
            item["paired"] = bool(self.paired[i])
        return item


def unpaired_faces(
    folder: str | Path, size: int, exclude: set[str], skip_bad: bool = False
) -> np.ndarray:
    """Decode every image in `folder` (not recursive) to a (N, size, size, 3) uint8 array of
    centre squares, leaving out file stems in `exclude`. A file that cannot be decoded raises
    DataError naming it, or is skipped with a warning when `skip_bad`."""
    from toonclip.data.cache import decode_at
    from toonclip.data.io import is_image_file
    from toonclip.errors import DataError

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"data.extra_faces={folder} is not a folder; pass a folder of face images")
    images, left_out = [], 0
    for path in sorted(root.iterdir()):
        if not is_image_file(path):
            continue
        if path.stem in exclude:
            left_out += 1
            continue
        try:
            images.append(decode_at(path, size)[0])
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipped (data.skip_bad): %s", exc)
    if left_out:
        log.warning("data.extra_faces: left out %d face(s) named like validation pairs", left_out)
    if not images:
        raise DataError(f"data.extra_faces={folder}: no usable images in it")
    return np.stack(images)


class PairDataModule(L.LightningDataModule):
    """Finds pairs under `root`, splits them (seeded), decodes them once, serves augmented batches.

    `samples_per_epoch` (None: one pass over the train pairs) sets how many samples a train epoch
    draws (see EpochSampler); `persistent_workers` and `prefetch_factor` apply when
    `num_workers` > 0, and every worker runs OpenCV and torch on one thread (see worker_init).
    `extra_faces`: a folder of unpaired faces added to the train set for distillation (items
    with "paired": False); faces named like a validation pair are left out, so no val face is
    ever trained on.
    """

    def __init__(
        self,
        root: str,
        faces_dir: str = "ffhq",
        cartoons_dir: str = "comics_heroes",
        size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        skip_bad: bool = False,
        cache: str = "memory",
        cache_dir: str | None = None,
        cache_scale: float = 1.25,
        augment: Mapping | None = None,
        pin_memory: bool = False,
        samples_per_epoch: int | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        extra_faces: str | None = None,
    ):
        super().__init__()
        from toonclip.errors import DataError

        if int(size) % 32:
            raise DataError(
                f"data.size={size}: must be a multiple of 32 (the encoder downsamples 32x)"
            )
        self.root, self.faces_dir, self.cartoons_dir = root, faces_dir, cartoons_dir
        self.size, self.batch_size, self.num_workers = int(size), int(batch_size), int(num_workers)
        self.val_fraction, self.split_seed, self.skip_bad = val_fraction, split_seed, skip_bad
        self.cache, self.cache_dir, self.cache_scale = cache, cache_dir, cache_scale
        self.augment_cfg = dict(augment or {})
        self.pin_memory = pin_memory
        if samples_per_epoch is not None and int(samples_per_epoch) < self.batch_size:
            raise DataError(
                f"data.samples_per_epoch={samples_per_epoch}: use at least data.batch_size "
                f"({self.batch_size}), or null for one pass over the train pairs per epoch"
            )
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.persistent_workers, self.prefetch_factor = bool(persistent_workers), prefetch_factor
        self.extra_faces = extra_faces
        self.n_extra = 0
        self.train_pairs: list[Pair] = []
        self.val_pairs: list[Pair] = []
        self.skipped: list[str] = []
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:  # called explicitly before fit so data errors surface before training
            return
        pairs = find_pairs(self.root, self.faces_dir, self.cartoons_dir)
        # Train crops are taken from a slightly larger image so random crops keep full detail.
        cache_size = int(math.ceil(self.size * self.cache_scale / 32) * 32)
        faces, cartoons, kept = build_cache(
            pairs, cache_size, self.cache, self.cache_dir, self.skip_bad
        )
        # Split after skipping bad files, so a skipped pair never leaves validation empty.
        self.skipped = [p.stem for p in pairs if p not in kept]  # by data.skip_bad
        self.train_pairs, self.val_pairs = split_pairs(kept, self.val_fraction, self.split_seed)
        index = {p.stem: i for i, p in enumerate(kept)}
        ti = [index[p.stem] for p in self.train_pairs]
        vi = [index[p.stem] for p in self.val_pairs]
        tf, tc = faces[ti], cartoons[ti]
        paired = None
        if self.extra_faces:
            val_stems = {p.stem for p in self.val_pairs}
            extra = unpaired_faces(self.extra_faces, cache_size, val_stems, self.skip_bad)
            self.n_extra = len(extra)
            paired = np.array([True] * len(tf) + [False] * len(extra))
            if len(extra):
                tf, tc = np.concatenate([tf, extra]), np.concatenate([tc, extra])
        vf = np.stack([resize(faces[i], self.size) for i in vi])
        vc = np.stack([resize(cartoons[i], self.size) for i in vi])
        # augment.device=gpu: the loader serves the cached squares as they are, and the module
        # augments whole batches on its device (device_augment.py).
        on_device = self.augment_cfg.get("device", "cpu") == "gpu"
        train_aug = _as_is if on_device else PairAugment(self.size, self.augment_cfg, train=True)
        self.train_set = PairDataset(tf, tc, train_aug, paired)
        self.val_set = PairDataset(vf, vc, PairAugment(self.size, self.augment_cfg, train=False))
        log.info(
            "data: %d train / %d val pairs from %s at %d px%s",
            len(tf) - self.n_extra,
            len(vf),
            self.root,
            self.size,
            f", + {self.n_extra} unpaired faces from {self.extra_faces}" if self.n_extra else "",
        )
        self._ready = True

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = None
        if train and self.samples_per_epoch:
            sampler = EpochSampler(len(dataset), self.samples_per_epoch, seed=global_seed())
        n = len(sampler) if sampler is not None else len(dataset)
        workers = self.num_workers > 0
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=self.num_workers,
            # Workers live across epochs and validations: no re-fork and no re-pickled cache.
            persistent_workers=workers and self.persistent_workers,
            prefetch_factor=self.prefetch_factor if workers else None,
            worker_init_fn=worker_init if workers else None,
            pin_memory=self.pin_memory,
            drop_last=train and n >= self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def grid_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first `n` validation pairs (un-augmented): the fixed rows of every validation grid."""
        items = [self.val_set[i] for i in range(min(n, len(self.val_set)))]
        return {k: torch.stack([it[k] for it in items]) for k in ("face", "cartoon")}

    def write_val_files(self, path: Path) -> None:
        path.write_text("".join(f"{p.stem}\n" for p in self.val_pairs))
