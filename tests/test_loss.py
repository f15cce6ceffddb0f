"""Perceptual + style loss: parts, weights, gradients."""

from __future__ import annotations

import pytest
import torch

from toonclip.errors import ConfigError
from toonclip.losses.perceptual import PerceptualStyleLoss, gram

LAYERS = {"relu1_2": 1.0, "relu2_2": 1.0}


def make(**kw):
    args = dict(
        layer_weights=LAYERS,
        perceptual_weight=1.0,
        style_weight=10.0,
        pixel_weight=1.0,
        ssim_weight=1.0,
        vgg_weights="none",
    )
    args.update(kw)
    torch.manual_seed(0)
    return PerceptualStyleLoss(**args)


def test_total_is_sum_of_named_parts():
    loss = make()
    pred, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    total, parts = loss(pred, target)
    assert set(parts) == {"perceptual", "style", "pixel", "dssim"}
    assert torch.allclose(total, sum(parts.values()), rtol=1e-5)
    assert all(v > 0 for v in parts.values())


def test_identical_images_give_zero_loss():
    x = torch.rand(1, 3, 32, 32)
    total, _ = make()(x, x.clone())
    assert total.item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_reaches_prediction_only():
    loss = make()
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    target = torch.rand(1, 3, 32, 32, requires_grad=True)
    total, _ = loss(pred, target)
    total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert not any(p.requires_grad for p in loss.vgg.parameters())


def test_layer_weights_and_global_weights_scale_parts():
    pred, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    base = {k: v.item() for k, v in make()(pred, target)[1].items()}
    doubled = {
        k: v.item()
        for k, v in make(style_weight=20.0, perceptual_weight=2.0)(pred, target)[1].items()
    }
    assert doubled["style"] == pytest.approx(2 * base["style"], rel=1e-4)
    assert doubled["perceptual"] == pytest.approx(2 * base["perceptual"], rel=1e-4)
    _, only_first = make(layer_weights={"relu1_2": 1.0, "relu2_2": 0.0})(pred, target)
    assert only_first["perceptual"].item() < base["perceptual"]


def test_zero_weight_terms_are_absent():
    _, parts = make(style_weight=0.0, pixel_weight=0.0, ssim_weight=0.0)(
        torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    )
    assert set(parts) == {"perceptual"}


def test_gram_matrix_values():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(gram(f), expected)


def test_unknown_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="relu9_9.*valid: relu1_1"):
        make(layer_weights={"relu9_9": 1.0})


def test_pixel_criterion_picks_the_pixel_terms_error():
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    only_pixel = dict(perceptual_weight=0.0, style_weight=0.0, ssim_weight=0.0, pixel_weight=2.0)
    _, l1 = make(**only_pixel)(pred, target)
    _, l2 = make(**only_pixel, pixel_criterion="l2")(pred, target)
    assert l1["pixel"].item() == pytest.approx(2 * (pred - target).abs().mean().item(), rel=1e-5)
    assert l2["pixel"].item() == pytest.approx(2 * (pred - target).pow(2).mean().item(), rel=1e-5)
    with pytest.raises(ConfigError, match="loss.pixel_criterion=l3: use one of l1"):
        make(pixel_criterion="l3")


def test_vgg_stays_in_eval_mode():
    loss = make()
    loss.train()
    assert not loss.vgg.training


def test_vgg_weights_from_a_torchvision_state_dict_file(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1)
    features = make_layers(cfgs["D"])
    path = tmp_path / "vgg16.pth"
    torch.save(
        {f"features.{k}": v for k, v in features.state_dict().items()}, path
    )  # torchvision layout
    loss = make(vgg_weights=str(path))
    assert loss.weights_record.loaded == f"file:{path}"
    assert torch.equal(loss.vgg.features[0].weight, features[0].weight)


def test_vgg_auto_offline_records_random_fallback(monkeypatch):
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    loss = make(vgg_weights="auto")
    assert loss.weights_record.loaded == "random" and "unreachable" in loss.weights_record.note


def test_ssim_term_is_the_val_metric_and_has_gradients():
    from torchmetrics.functional.image import structural_similarity_index_measure

    from toonclip.losses.ssim import ssim

    torch.manual_seed(0)
    target = torch.rand(2, 3, 48, 40)
    pred = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    ours = ssim(pred, target)
    theirs = structural_similarity_index_measure(pred.detach(), target, data_range=1.0)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert ssim(target, target).item() == pytest.approx(1.0, abs=1e-6)
    (1 - ours).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_default_loss_is_l1_plus_ssim_without_vgg16():
    from hydra.utils import instantiate

    from toonclip.config import compose

    loss = instantiate(compose([]).loss)
    assert loss.vgg is None  # perceptual and style weights 0: VGG16 is never built or run
    total, parts = loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert set(parts) == {"pixel", "dssim"}
    full = instantiate(compose(["loss=perceptual_style", "loss.vgg_weights=none"]).loss)
    assert full.vgg is not None and full.perceptual_weight == full.style_weight == 1.0


def test_edge_term_scores_a_soft_step_against_a_sharp_one_and_ignores_a_constant():
    from toonclip.losses.edges import gradient_l1

    sharp = torch.zeros(1, 3, 16, 16)
    sharp[..., 8:] = 1.0  # a vertical outline: one 1-px step
    soft = sharp.clone()
    soft[..., 7], soft[..., 8] = 1 / 3, 2 / 3  # the same step spread over 3 px
    assert gradient_l1(sharp + 0.25, sharp).item() == pytest.approx(0.0, abs=1e-7)
    # dx of the sharp step: one 1 among 15 columns; the ramp: three thirds. |diff| = 4/3 per row.
    assert gradient_l1(soft, sharp).item() == pytest.approx((4 / 3) / 15, rel=1e-5)
    # Pixel L1 sees the ramp as a small error too; the edge term weighs it 2x more here.
    assert gradient_l1(soft, sharp) > 2 * torch.nn.functional.l1_loss(soft, sharp)


def test_edge_weight_adds_a_named_part_with_gradients():
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    target = torch.rand(1, 3, 32, 32)
    total, parts = make(perceptual_weight=0.0, style_weight=0.0, edge_weight=2.0)(pred, target)
    assert set(parts) == {"pixel", "dssim", "edge"}
    assert torch.allclose(total, sum(parts.values()), rtol=1e-5)
    total.backward()
    assert pred.grad.abs().sum() > 0
    _, without = make(perceptual_weight=0.0, style_weight=0.0)(pred, target)
    assert "edge" not in without  # default 0: not computed


def test_ssim_term_is_float32_under_bf16_autocast():
    """The GPU recipe trains and validates under bf16-mixed; in bf16 the SSIM variances
    (E[x^2] - E[x]^2 of values near 0.6) are mostly rounding."""
    from toonclip.losses.ssim import ssim

    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64), 5, 1, 2)
    target = 0.5 + 0.3 * smooth  # a face's range: a bright mean, small local variances
    pred = (target + 0.02 * torch.randn_like(target)).requires_grad_()
    loss32 = 1 - ssim(pred, target)
    (grad32,) = torch.autograd.grad(loss32, pred)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16 = 1 - ssim(pred, target)
    (grad16,) = torch.autograd.grad(loss16, pred)
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=1e-5)
    assert torch.allclose(grad16, grad32, rtol=1e-4, atol=1e-9)
