"""The path most users take: ImageNet weights already in the local caches, and no network.

Nothing can be downloaded on the machines that test toonclip, so every other test runs with
random weights. Here random stand-ins are put where the libraries look first (the Hugging Face
hub cache for timm's encoder, torch hub's checkpoint folder for torchvision's VGG16), in the
layout those libraries write, and `auto` and `imagenet` must load them and say so.
"""

from __future__ import annotations

import json

import huggingface_hub.constants as hf_constants
import pytest
import torch

from toonclip.errors import WeightsError
from toonclip.models import build_generator

REV = "0123456789abcdef0123456789abcdef01234567"  # any commit id: refs/main points at it


@pytest.fixture
def encoder_in_hub_cache(tmp_path, monkeypatch):
    """A random mobilenetv3_large_100 saved as timm's ImageNet file in a fresh hub cache;
    returns the donor model."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(7)
    donor = timm.create_model("mobilenetv3_large_100")
    hub_id = timm.models.get_pretrained_cfg("mobilenetv3_large_100").hf_hub_id
    repo = tmp_path / "hf" / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REV)
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in donor.state_dict().items()}, snapshot / "model.safetensors"
    )
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return donor


@pytest.fixture
def vgg_in_torch_hub(tmp_path, monkeypatch):
    """Random VGG16 features saved as torchvision's vgg16-397923af.pth under $TORCH_HOME;
    returns the saved state dict (torchvision's key names)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(8)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / "vgg16-397923af.pth")
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return state


@pytest.mark.parametrize("policy", ["auto", "imagenet"])
def test_encoder_weights_come_from_the_hub_cache_offline(encoder_in_hub_cache, policy):
    gen = build_generator(weights=policy)
    assert gen.weights_record.loaded == "imagenet"
    encoder = gen.net.encoder.model
    donor = encoder_in_hub_cache.state_dict()
    names = [k for k in encoder.state_dict() if k in donor]
    assert len(names) > 100  # the whole feature trunk, not a stray tensor
    for name in names:
        assert torch.equal(encoder.state_dict()[name], donor[name]), name


def test_an_empty_hub_cache_is_a_clear_error_for_imagenet(tmp_path, monkeypatch):
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="model.weights=imagenet.*not in the local hub cache"):
        build_generator(weights="imagenet")


@pytest.mark.parametrize("policy", ["auto", "imagenet"])
def test_vgg16_weights_come_from_the_torch_hub_cache_offline(vgg_in_torch_hub, policy):
    from toonclip.losses.perceptual import PerceptualStyleLoss

    loss = PerceptualStyleLoss(layer_weights={"relu1_2": 1.0, "relu4_3": 1.0}, vgg_weights=policy)
    assert loss.weights_record.loaded == "imagenet"
    for i, layer in enumerate(loss.vgg.features):
        if isinstance(layer, torch.nn.Conv2d):
            assert torch.equal(layer.weight, vgg_in_torch_hub[f"features.{i}.weight"]), i


def test_a_run_with_cached_weights_records_imagenet_for_both(
    encoder_in_hub_cache, vgg_in_torch_hub, synthetic_root, tiny_overrides, tmp_path
):
    """`loss=perceptual_style` with both caches filled: the run trains from the cached encoder
    and scores with the cached VGG16, and summary.json says where both came from."""
    from toonclip.training.run import prepare, train

    run_dir = tmp_path / "run"
    overrides = tiny_overrides(synthetic_root, run_dir, steps=1) + ["loss=perceptual_style"]
    overrides = [o for o in overrides if not o.startswith(("model.weights", "loss.vgg_weights"))]
    cfg, run_dir, ckpt = prepare(overrides)
    train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)
    weights = json.loads((run_dir / "summary.json").read_text())["weights"]
    assert weights["encoder"]["loaded"] == "imagenet" and weights["encoder"]["requested"] == "auto"
    assert weights["vgg16"]["loaded"] == "imagenet" and weights["vgg16"]["requested"] == "auto"
