"""Pairs, decoding, caching and paired augmentation."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import make_pairs
from PIL import Image

from toonclip.data import cache as cache_mod
from toonclip.data.augment import PairAugment
from toonclip.data.cache import build_cache
from toonclip.data.datamodule import PairDataModule
from toonclip.data.device_augment import BatchPairAugment
from toonclip.data.io import load_rgb
from toonclip.data.pairs import find_pairs, split_pairs
from toonclip.errors import ConfigError, DataError

AUG = {
    "crop_scale": [0.5, 1.0],
    "crop_ratio": [0.9, 1.1],
    "hflip_p": 0.5,
    "affine_p": 1.0,
    "rotate": 20,
    "scale": [0.9, 1.1],
    "translate": 0.05,
    "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "p": 1.0},
}


def test_pairs_match_by_stem_across_extensions_and_warn_on_orphans(tmp_path, caplog):
    root = make_pairs(tmp_path, n=3, size=32)
    Image.new("RGB", (32, 32)).save(root / "ffhq" / "orphan.png")
    (root / "ffhq" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        pairs = find_pairs(root)
    assert [p.stem for p in pairs] == ["face_000", "face_001", "face_002"]
    assert pairs[0].face.suffix == ".jpg" and pairs[0].cartoon.suffix == ".png"
    assert "orphan" in caplog.text


def test_zero_pairs_names_both_folders(tmp_path):
    (tmp_path / "ffhq").mkdir()
    (tmp_path / "comics_heroes").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ffhq" / "a.png")
    with pytest.raises(DataError, match=r"ffhq.*comics_heroes"):
        find_pairs(tmp_path)


def test_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="data.root=.*toonclip data fetch"):
        find_pairs(tmp_path / "nowhere")


def test_split_is_seeded_and_disjoint():
    from toonclip.data.pairs import Pair

    pairs = [Pair(f"s{i}", None, None) for i in range(20)]
    train, val = split_pairs(pairs, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16
    assert not {p.stem for p in train} & {p.stem for p in val}
    assert split_pairs(pairs, 0.2, seed=3) == (train, val)
    assert split_pairs(pairs, 0.2, seed=4)[1] != val


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_every_image_becomes_rgb(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        img = img.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    out = load_rgb(path)
    assert out.shape == (16, 20, 3) and out.dtype == np.uint8
    if mode == "I;16":
        assert np.abs(out[..., 0].astype(int) - rgb[..., 0]).max() <= 1


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_bad_image_error_names_file_and_skip_bad_counts(tmp_path, caplog):
    root = make_pairs(tmp_path, n=4, size=32)
    (root / "ffhq" / "face_001.jpg").write_bytes(b"not a jpeg")
    pairs = find_pairs(root)
    with pytest.raises(DataError, match=r"1 image\(s\).*face_001\.jpg.*data.skip_bad=true") as err:
        build_cache(pairs, 32)
    assert "\n" not in str(err.value)
    faces, cartoons, kept = build_cache(pairs, 32, skip_bad=True)
    assert len(kept) == 3 and "face_001" not in [p.stem for p in kept]
    assert faces.shape == cartoons.shape == (3, 32, 32, 3)


def test_pairs_of_different_sizes_are_resized_with_warning(tmp_path, caplog):
    root = make_pairs(tmp_path, n=2, size=64)
    Image.open(root / "comics_heroes" / "face_000.png").resize((48, 48)).save(
        root / "comics_heroes" / "face_000.png"
    )
    with caplog.at_level(logging.WARNING):
        faces, cartoons, _ = build_cache(find_pairs(root), 32)
    assert cartoons.shape == faces.shape == (2, 32, 32, 3)
    assert "face_000" in caplog.text and "64x64" in caplog.text and "48x48" in caplog.text


def test_disk_cache_decodes_each_file_once(tmp_path, monkeypatch):
    root = make_pairs(tmp_path / "d", n=3, size=64)
    calls = []
    real = cache_mod.decode_at
    monkeypatch.setattr(cache_mod, "decode_at", lambda p, s: (calls.append(p), real(p, s))[1])
    first = build_cache(find_pairs(root), 32, mode="disk", cache_dir=tmp_path / "c")
    assert len(calls) == 6
    second = build_cache(find_pairs(root), 32, mode="disk", cache_dir=tmp_path / "c")
    assert len(calls) == 6  # served from disk
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    build_cache(find_pairs(root), 64, mode="disk", cache_dir=tmp_path / "c")
    assert len(calls) == 12  # another size is another key


def _marker_pair(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Face and cartoon of different colours carrying the same asymmetric 'L' marker.

    Their red channels are identical, so after the same geometry they must match exactly.
    """
    face = np.zeros((size, size, 3), np.uint8) + np.array([128, 100, 100], np.uint8)
    cartoon = np.zeros((size, size, 3), np.uint8) + np.array([128, 30, 200], np.uint8)
    for img in (face, cartoon):
        img[20:70, 20:30] = 255  # vertical bar
        img[60:70, 30:55] = 255  # foot to the right: flips and rotations change it
    return face, cartoon


def test_geometry_is_replayed_on_the_cartoon():
    face, cartoon = _marker_pair()
    aug = PairAugment(64, {**AUG, "color_jitter": {"p": 0}}, train=True)
    moved = 0
    for seed in range(20):
        np.random.seed(seed)
        import random

        random.seed(seed)
        f, c = aug(face, cartoon)
        assert f.shape == c.shape == (64, 64, 3)
        assert np.array_equal(f[..., 0], c[..., 0]), seed
        assert not np.array_equal(f[..., 2], c[..., 2])  # they really are two images
        moved += not np.array_equal(f[..., 0] > 200, _marker_pair(64)[0][..., 0] > 200)
    assert moved > 10  # the transforms really did move the marker


def test_photometric_changes_touch_the_face_only():
    face, cartoon = _marker_pair()
    aug = PairAugment(
        96,
        {
            **AUG,
            "crop_scale": [1.0, 1.0],
            "crop_ratio": [1.0, 1.0],
            "hflip_p": 0.0,
            "affine_p": 0.0,
        },
        train=True,
    )
    f, c = aug(face, cartoon)
    assert np.array_equal(c, cartoon)
    assert not np.array_equal(f, face)


def test_face_noise_has_the_configured_strength_and_spares_the_cartoon():
    face, cartoon = _marker_pair()
    still = {**AUG, "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "hflip_p": 0.0}
    still.update(affine_p=0.0, color_jitter=None)
    aug = PairAugment(96, {**still, "face_noise": {"std": [0.04, 0.05], "p": 1.0}}, train=True)
    f, c = aug(face, cartoon)
    assert np.array_equal(c, cartoon)
    # The face's flat background (away from the 255 marker, which clips) carries the noise.
    diff = f[80:, 60:].astype(float) - face[80:, 60:]
    assert 0.035 * 255 < diff.std() < 0.055 * 255
    assert abs(diff.mean()) < 1.0
    off = PairAugment(96, {**still, "face_noise": {"std": [0.04, 0.05], "p": 0.0}}, train=True)
    assert np.array_equal(off(face, cartoon)[0], face)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"face_noise": {"std": 0.05, "p": 0.5}}, "data.augment.face_noise.std=0.05"),
        ({"face_noise": {"std": [0.06, 0.02], "p": 0.5}}, "data.augment.face_noise.std="),
        ({"crop_scale": [0.7]}, "data.augment.crop_scale=[0.7]"),
        ({"scale": "wide"}, "data.augment.scale=wide"),
        ({"hflip_p": 1.5}, "data.augment.hflip_p=1.5"),
        ({"face_noise": {"std": [0.02, 0.06], "p": "half"}}, "data.augment.face_noise.p=half"),
    ],
)
@pytest.mark.parametrize("builder", ["cpu", "device"])
def test_malformed_augment_options_name_the_option_and_the_fix(override, named, builder):
    cfg = {**AUG, **override}
    with pytest.raises(ConfigError) as err:
        if builder == "cpu":
            PairAugment(96, cfg, train=True)
        else:
            BatchPairAugment(96, cfg)
    message = str(err.value)
    assert named in message and "\n" not in message
    assert ("e.g. data.augment." in message) or ("probability in [0, 1]" in message)


def test_datamodule_batches_are_uint8_and_val_is_deterministic(synthetic_root, tmp_path):
    dm = PairDataModule(str(synthetic_root), size=32, batch_size=4, augment=AUG)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["face"].shape == (4, 3, 32, 32) and batch["face"].dtype.is_floating_point is False
    v1, v2 = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert (v1["face"] == v2["face"]).all()
    dm.write_val_files(tmp_path / "val.txt")
    assert (tmp_path / "val.txt").read_text().split() == [p.stem for p in dm.val_pairs]


def test_size_must_be_multiple_of_32(synthetic_root):
    with pytest.raises(DataError, match="data.size=50"):
        PairDataModule(str(synthetic_root), size=50)


def test_shared_copy_is_left_untouched(synthetic_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_root, copy)
    before = sorted(p.name for p in copy.rglob("*"))
    PairDataModule(str(copy), size=32, cache="memory").setup()
    assert sorted(p.name for p in copy.rglob("*")) == before


def test_epoch_sampler_draws_whole_shuffled_passes_reshuffled_each_epoch():
    from toonclip.data.loading import EpochSampler

    sampler = EpochSampler(5, 12, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 12
    for start in (0, 5):  # every full pass is a permutation: each item once
        assert sorted(first[start : start + 5]) == [0, 1, 2, 3, 4]
    assert sorted(np.bincount(first, minlength=5)) == [2, 2, 2, 3, 3]
    assert list(sampler) == first  # the order depends on (seed, epoch) only
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_epoch_sampler_is_sharded_by_lightnings_ddp_wrapper():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from toonclip.data.loading import EpochSampler

    shards = []
    for rank in (0, 1):
        sampler = EpochSampler(5, 12, seed=1)
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=True)
        wrapper.set_epoch(3)
        assert sampler.epoch == 3  # forwarded, so every rank reshuffles alike
        shards.append(list(wrapper))
    reference = EpochSampler(5, 12, seed=1)
    reference.set_epoch(3)
    assert len(shards[0]) == len(shards[1]) == 6
    assert sorted(shards[0] + shards[1]) == sorted(reference)  # disjoint halves of one epoch


def test_samples_per_epoch_sets_the_train_epoch_length(synthetic_root):
    dm = PairDataModule(str(synthetic_root), size=32, batch_size=4, samples_per_epoch=20)
    dm.setup("fit")
    assert len(dm.train_set) < 20
    loader = dm.train_dataloader()
    assert len(loader) == 20 // 4 == len(list(loader))
    one_pass = PairDataModule(str(synthetic_root), size=32, batch_size=4, samples_per_epoch=None)
    one_pass.setup("fit")
    assert len(one_pass.train_dataloader()) == len(one_pass.train_set) // 4
    with pytest.raises(DataError, match="samples_per_epoch=2"):
        PairDataModule(str(synthetic_root), size=32, batch_size=4, samples_per_epoch=2)


class _ThreadCounts:
    """2 items whose "face" holds the OpenCV and "cartoon" the torch thread count of the process
    that loads them."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        import cv2
        import torch

        counts = (cv2.getNumThreads(), torch.get_num_threads())
        face, cartoon = (torch.full((3, 1, 1), c, dtype=torch.uint8) for c in counts)
        return {"face": face, "cartoon": cartoon, "index": i}


def test_loader_workers_run_opencv_and_torch_on_one_thread(synthetic_root):
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(4)  # what a worker would inherit from a parent with a 4-thread pool
    try:
        assert cv2.getNumThreads() == 4
        dm = PairDataModule(str(synthetic_root), size=32, batch_size=2, num_workers=1)
        batch = next(iter(dm._loader(_ThreadCounts(), train=False)))
    finally:
        cv2.setNumThreads(before)
    assert batch["face"].flatten().tolist() == [1] * 6  # OpenCV: no thread pool
    # torch's own worker loop sets one intra-op thread too; worker_init keeps it so
    assert batch["cartoon"].flatten().tolist() == [1] * 6


def test_collate_stacks_items_in_channels_last_memory(synthetic_root):
    import torch

    from toonclip.data.loading import collate_pairs

    dm = PairDataModule(str(synthetic_root), size=32, batch_size=3, augment=AUG)
    dm.setup("fit")
    items = [dm.val_set[i] for i in range(len(dm.val_set))] * 3
    batch = collate_pairs(items)
    for key in ("face", "cartoon"):
        assert batch[key].dtype == torch.uint8 and batch[key].shape == (len(items), 3, 32, 32)
        assert torch.equal(batch[key], torch.stack([it[key] for it in items]))
        assert batch[key].is_contiguous(memory_format=torch.channels_last)
    assert batch["index"].tolist() == [it["index"] for it in items]
