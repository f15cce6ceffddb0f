"""The training recipe's parts: residual generator, random-VGG init, layer weights, EMA, BN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toonclip.errors import ConfigError
from toonclip.inference import load_checkpoint
from toonclip.losses.perceptual import PerceptualStyleLoss
from toonclip.losses.vgg import VGGFeatures
from toonclip.models import build_generator, count_parameters

SMALL = ("unet", "mobilenetv3_small_050")


def _reload(gen, model: dict, tmp_path) -> torch.nn.Module:
    """`gen` saved in the checkpoint format `toonclip train` writes, with `model` as its
    config, and loaded back the way eval, predict and export load it."""
    path = tmp_path / "g.ckpt"
    state = {"generator." + k: v for k, v in gen.state_dict().items()}
    cfg = {"model": model, "data": {"size": 64}}
    torch.save({"hyper_parameters": {"cfg": cfg}, "state_dict": state}, path)
    return load_checkpoint(path)[0]


def test_residual_generator_starts_at_identity_with_the_same_parameters():
    torch.manual_seed(0)
    plain = build_generator(*SMALL, weights="none")
    residual = build_generator(*SMALL, weights="none", residual=True).eval()
    assert count_parameters(plain) == count_parameters(residual)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(residual(x), x)
        assert not torch.allclose(plain.eval()(x), x, atol=1e-2)


def test_residual_flag_survives_a_checkpoint(tmp_path):
    gen = build_generator(*SMALL, weights="none", residual=True)
    head = gen.net.segmentation_head[0]
    torch.nn.init.normal_(head.weight, std=0.01)  # a trained head: output != input
    loaded = _reload(gen, {"arch": SMALL[0], "encoder": SMALL[1], "residual": True}, tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert loaded.residual
        torch.testing.assert_close(loaded(x), gen.eval()(x))


def test_residual_blur_adds_back_a_blurred_face_and_survives_a_checkpoint(tmp_path):
    gen = build_generator(*SMALL, weights="none", residual=True, residual_blur=1.5).eval()
    flat = torch.full((1, 3, 64, 64), 0.4)
    checker = (torch.arange(64).view(1, -1) + torch.arange(64).view(-1, 1)) % 2
    checker = checker.float().expand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gen(flat), flat)  # flat shading passes unchanged
        out = gen(checker)
    # a 1 px checker is the texture the plain skip copies through: blurred to its mean, 0.5
    assert (out - 0.5).abs().max() < 0.02 and checker.std() > 0.4
    head = gen.net.segmentation_head[0]
    torch.nn.init.normal_(head.weight, std=0.01)
    model = {"arch": SMALL[0], "encoder": SMALL[1], "residual": True, "residual_blur": 1.5}
    loaded = _reload(gen, model, tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert loaded.residual_blur == 1.5
        torch.testing.assert_close(loaded(x), gen(x))


def test_decoder_norm_survives_a_checkpoint(tmp_path):
    gen = build_generator(*SMALL, weights="none", residual=True, decoder_norm="instancenorm")
    torch.nn.init.normal_(gen.net.segmentation_head[0].weight, std=0.01)
    model = {
        "arch": SMALL[0],
        "encoder": SMALL[1],
        "residual": True,
        "decoder_norm": "instancenorm",
    }
    loaded = _reload(gen, model, tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in loaded.modules())
        torch.testing.assert_close(loaded(x), gen.eval()(x))


def test_residual_blur_needs_a_sigma_of_zero_or_more_and_a_residual_to_blur():
    with pytest.raises(ValueError, match=r"residual_blur=-1.0: use a Gaussian sigma >= 0"):
        build_generator(*SMALL, weights="none", residual=True, residual_blur=-1.0)
    plain = build_generator(*SMALL, weights="none", residual=False, residual_blur=1.0)
    assert plain.residual_blur == 0.0  # model.residual=false with the default blur still builds


def _signal_ratio(init: str) -> float:
    """How much relu4_3 sees of a small change to the image, relative to relu1_2."""
    torch.manual_seed(0)
    vgg = VGGFeatures(["relu1_2", "relu4_3"], "none", init)
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        fx, fy = vgg(x), vgg(y)
    diff = {k: (fx[k] - fy[k]).abs().mean().item() for k in fx}
    return diff["relu4_3"] / diff["relu1_2"]


def test_kaiming_init_keeps_deep_vgg_features_alive():
    # torch's default conv init shrinks the signal at every layer: relu4_3 sees ~1/1000 of
    # what relu1_2 sees, so deep perceptual and Gram terms vanish. He init keeps one scale.
    assert _signal_ratio("torch") < 1e-2
    assert _signal_ratio("kaiming") > 0.3


def test_random_init_is_recorded_and_validated():
    vgg = VGGFeatures(["relu1_2"], "none", "kaiming")
    assert vgg.weights_record.loaded == "random" and "kaiming" in vgg.weights_record.note
    with pytest.raises(ConfigError, match="vgg_random_init"):
        VGGFeatures(["relu1_2"], "none", "xavier")


def test_zero_weight_drops_a_layer():
    loss = PerceptualStyleLoss(
        {"relu1_2": 1.0, "relu2_2": 0.0},
        {"relu1_2": 0.0, "relu2_2": 1.0},
        style_weight=1.0,
        vgg_weights="none",
    )
    assert loss.layer_weights == {"relu1_2": 1.0}
    assert loss.style_layer_weights == {"relu2_2": 1.0}
    assert loss.vgg.layers == ["relu1_2", "relu2_2"]


def _short_run(root, run_dir, *extra):
    """The default recipe (plus `extra` overrides) for 40 steps at 64 px, batch 4; the run folder."""
    from toonclip.training.run import prepare, train

    overrides = [
        f"data.root={root}",
        "data.batch_size=4",
        f"run_dir={run_dir}",
        "model.weights=none",
        "loss.vgg_weights=none",
        "trainer.num_sanity_val_steps=0",
        "trainer.checkpoint_every_n_steps=20",
        "grid.n_samples=2",
        "grid.tile=32",
        *extra,
        "trainer.max_steps=40",
        "trainer.val_every_n_steps=20",
        "data.size=64",  # after *extra: an experiment's own size and length do not apply
    ]
    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


def _summary(run_dir) -> dict:
    import json

    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, synthetic_root):
    """The default recipe trained 40 steps at batch 4 on the synthetic posterise mapping."""
    return _short_run(synthetic_root, tmp_path_factory.mktemp("recipe") / "run")


def test_eval_mode_matches_train_mode_after_a_short_small_batch_run(recipe_run):
    # The blow-up mechanism: BatchNorm running statistics that do not describe the weights,
    # so eval-mode outputs (what validation, predict and export use) leave the train-mode ones.
    from toonclip.data.datamodule import PairDataModule

    gen, cfg = load_checkpoint(recipe_run / "checkpoints" / "last.ckpt")
    dm = PairDataModule(**cfg.data)
    dm.setup()
    faces = dm.grid_batch(4)["face"].float() / 255
    with torch.no_grad():
        eval_out = gen.eval()(faces).clamp(0, 1)
        train_out = gen.train()(faces).clamp(0, 1)
    assert (eval_out - train_out).abs().mean().item() < 0.03


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    """16 synthetic pairs whose cartoon is a fixed colour transform of the face, smoothed (warmer,
    flatter: Gaussian blur, radius 1.5 px): the kind of global change the real cartoons make, and
    one a network can learn in 40 steps.
    (The posterised pairs of `synthetic_root` are a per-pixel staircase: 40 steps of any recipe
    tried stay below identity on them, 23.1 vs 23.7 dB.)"""
    from PIL import Image, ImageFilter

    from toonclip.data.synthetic import synthetic_face

    root = tmp_path_factory.mktemp("colour") / "data"
    (root / "ffhq").mkdir(parents=True)
    (root / "comics_heroes").mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        face = synthetic_face(rng, 64)
        cartoon = np.clip(face * np.array([0.7, 0.8, 0.9]) + [50, 10, -10], 0, 255)
        cartoon = Image.fromarray(cartoon.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
        Image.fromarray(face).save(root / "ffhq" / f"f{i:02d}.png")
        cartoon.save(root / "comics_heroes" / f"f{i:02d}.png")
    return root


def test_a_short_run_beats_identity_on_an_easy_mapping(colour_root, tmp_path):
    summary = _summary(_short_run(colour_root, tmp_path / "default"))
    final, identity = summary["final"], summary["identity"]
    # 28.2 vs 20.2 dB, SSIM 0.96 vs 0.83 when written
    assert final["val/psnr"] > identity["val/psnr"] + 3.0
    assert final["val/ssim"] > identity["val/ssim"]
    assert summary["gain"]["psnr"] == pytest.approx(final["val/psnr"] - identity["val/psnr"])


@pytest.mark.slow
def test_the_seed_articles_loop_does_not_on_the_same_mapping(colour_root, tmp_path):
    # What the default recipe replaced: the same 40 steps land below identity (18.8 vs 20.2 dB).
    summary = _summary(_short_run(colour_root, tmp_path / "plain", "experiment=recipe_plain"))
    assert summary["final"]["val/psnr"] < summary["identity"]["val/psnr"]


def test_ema_weights_are_what_the_checkpoint_serves(recipe_run):
    # WeightAveraging puts the averaged weights in state_dict (what eval/predict/export load) and
    # keeps the raw ones for a resume; at the end of fit both are the average.
    ckpt = torch.load(recipe_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert "current_model_state" in ckpt and "averaging_state" in ckpt
    key = "generator.net.segmentation_head.0.weight"
    gen, _ = load_checkpoint(recipe_run / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(
        gen.state_dict()["net.segmentation_head.0.weight"], ckpt["state_dict"][key]
    )


def test_ema_update_follows_decay_and_copies_integer_buffers():
    from toonclip.training.averaging import ema_multi_avg_fn

    fn = ema_multi_avg_fn(decay=0.9, warmup=10.0)
    avg, cur = [torch.zeros(3), torch.tensor(5)], [torch.ones(3), torch.tensor(7)]
    fn(avg, cur, 1000)  # warm-up over: decay 0.9
    torch.testing.assert_close(avg[0], torch.full((3,), 0.1))
    assert avg[1].item() == 7
    avg = [torch.zeros(3)]
    fn(avg, [torch.ones(3)], 0)  # first update: decay (1+0)/(10+0) = 0.1
    torch.testing.assert_close(avg[0], torch.full((3,), 0.9))


class _Payload:
    """Unpickling this writes a file: what a crafted checkpoint could do."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    from toonclip.errors import DataError

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"cfg": {}}, "state_dict": {}, "x": _Payload(marker)}, path)
    with pytest.raises(DataError, match="not a toonclip checkpoint, or not a safe one"):
        load_checkpoint(path)
    assert not marker.exists()
