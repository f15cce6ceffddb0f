"""Batch augmentation on the training device: the pair stays aligned, jitter touches the face only."""

from __future__ import annotations

import json

import torch

from toonclip.data.device_augment import BatchPairAugment

OFF = {
    "crop_scale": [1.0, 1.0],
    "crop_ratio": [1.0, 1.0],
    "hflip_p": 0.0,
    "affine_p": 0.0,
    "rotate": 0.0,
    "scale": [1.0, 1.0],
    "translate": 0.0,
    "color_jitter": None,
}
STRONG = {
    **OFF,
    "crop_scale": [0.5, 1.0],
    "crop_ratio": [0.8, 1.25],
    "hflip_p": 0.5,
    "affine_p": 1.0,
    "rotate": 20.0,
    "scale": [0.8, 1.2],
    "translate": 0.1,
}


def smooth_batch(n: int = 6, size: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bicubic").clamp(0, 1)


def test_face_and_cartoon_get_the_same_geometry():
    face = smooth_batch()
    cartoon = 1 - face  # any per-pixel map: aligned outputs keep it exactly
    out_face, out_cartoon = BatchPairAugment(32, STRONG, seed=1)(face, cartoon)
    assert out_face.shape == out_cartoon.shape == (6, 3, 32, 32)
    torch.testing.assert_close(out_cartoon, 1 - out_face, atol=1e-5, rtol=0)
    # ... and the geometry really changed (each sample differently)
    plain, _ = BatchPairAugment(32, OFF, seed=1)(face, cartoon)
    assert (out_face - plain).abs().mean() > 0.02


def test_everything_off_is_a_resize_and_a_flip_is_a_flip():
    face = smooth_batch(size=32)
    out, _ = BatchPairAugment(32, OFF, seed=0)(face, face)
    torch.testing.assert_close(out, face, atol=1e-5, rtol=0)
    flipped, _ = BatchPairAugment(32, {**OFF, "hflip_p": 1.0}, seed=0)(face, face)
    torch.testing.assert_close(flipped, face.flip(-1), atol=1e-5, rtol=0)


def test_colour_jitter_changes_the_face_only():
    face = smooth_batch()
    jitter = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.0, "p": 1.0}
    cfg = {**STRONG, "color_jitter": jitter}
    jf, jc = BatchPairAugment(32, cfg, seed=3)(face, face.clone())
    pf, pc = BatchPairAugment(32, STRONG, seed=3)(face, face.clone())
    torch.testing.assert_close(jc, pc)  # same geometry, cartoon untouched
    assert (jf - pf).abs().mean() > 0.01


def test_face_noise_has_the_configured_strength_and_spares_the_cartoon():
    face = smooth_batch() * 0.5 + 0.25  # away from 0 and 1, so clamping does not cut the noise
    cfg = {**STRONG, "face_noise": {"std": [0.04, 0.05], "p": 1.0}}
    nf, nc = BatchPairAugment(32, cfg, seed=3)(face, face.clone())
    pf, pc = BatchPairAugment(32, STRONG, seed=3)(face, face.clone())
    torch.testing.assert_close(nc, pc)  # same geometry, cartoon untouched
    std = (nf - pf).flatten(1).std(1)
    assert ((std > 0.035) & (std < 0.055)).all(), std
    many = face.repeat(4, 1, 1, 1)
    half = {**STRONG, "face_noise": {"std": [0.04, 0.05], "p": 0.5}}
    hf, _ = BatchPairAugment(32, half, seed=3)(many, many.clone())
    plain, _ = BatchPairAugment(32, STRONG, seed=3)(many, many.clone())
    touched = (hf - plain).abs().flatten(1).amax(1) > 0
    assert 0 < touched.sum() < touched.numel()


def test_training_with_augmentation_on_the_device(
    tmp_path, synthetic_root, tiny_overrides, monkeypatch
):
    from toonclip.training.run import prepare, train

    calls = []
    augment = BatchPairAugment.__call__

    def counted(self, face, cartoon):
        calls.append(face.shape[0])
        return augment(self, face, cartoon)

    monkeypatch.setattr(BatchPairAugment, "__call__", counted)
    overrides = [
        *tiny_overrides(synthetic_root, tmp_path / "run"),
        "data.augment.device=gpu",
        "data.augment.crop_scale=[0.7,1.0]",
    ]
    cfg, run_dir, ckpt = prepare(overrides)
    train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert calls == [2, 2]  # each training batch once, validation batches never


def test_the_loader_leaves_augmentation_to_the_device(synthetic_root):
    from toonclip.data.datamodule import PairDataModule

    reads = {}
    for where in ("cpu", "gpu"):
        dm = PairDataModule(
            str(synthetic_root), size=32, batch_size=2, augment={**STRONG, "device": where}
        )
        dm.setup("fit")
        reads[where] = [dm.train_set[0]["face"] for _ in range(6)]
    assert not all(torch.equal(reads["cpu"][0], r) for r in reads["cpu"][1:])  # augmented
    assert all(torch.equal(reads["gpu"][0], r) for r in reads["gpu"][1:])  # served as it is
