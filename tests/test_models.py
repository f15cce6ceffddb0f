"""The generator factory: names, parameter count, weights policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from toonclip.errors import ConfigError, WeightsError
from toonclip.models import build_generator, count_parameters, resolve_arch, resolve_encoder


def test_default_is_the_flash_network_with_pinned_parameter_count():
    gen = build_generator("unetplusplus", "mobilenetv3_large_100", weights="none")
    assert count_parameters(gen) == 6_917_635
    assert type(gen.net).__name__ == "UnetPlusPlus"
    x = torch.rand(2, 3, 64, 64)
    assert gen(x).shape == (2, 3, 64, 64)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mobilenetv3_large_100", "tu-mobilenetv3_large_100"),  # Flash / timm name
        ("tu-mobilenetv3_large_100", "tu-mobilenetv3_large_100"),  # smp's explicit prefix
        ("efficientnet-b0", "efficientnet-b0"),  # smp native
        ("resnet18", "resnet18"),  # both: smp's own wins
        ("efficientnet_b0", "tu-efficientnet_b0"),  # timm spelling
    ],
)
def test_encoder_names_resolve(name, expected):
    assert resolve_encoder(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unetplusplus", "unetplusplus"),
        ("unet", "unet"),
        ("fpn", "fpn"),
        ("linknet", "linknet"),
        ("manet", "manet"),
        ("pan", "pan"),
        ("pspnet", "pspnet"),
        ("deeplabv3", "deeplabv3"),
        ("deeplabv3plus", "deeplabv3plus"),
        ("UNet++", "unetplusplus"),  # spellings people type
        ("unet_plus_plus", "unetplusplus"),
        ("DeepLabV3+", "deeplabv3plus"),
    ],
)
def test_flash_head_names_are_accepted(name, expected):
    assert resolve_arch(name) == expected


def test_unknown_encoder_lists_valid_names_and_nearest():
    with pytest.raises(ConfigError) as err:
        resolve_encoder("mobilenetv3_large_10O")
    msg = str(err.value)
    assert "model.encoder" in msg and "nearest: mobilenetv3_large_100" in msg
    assert "resnet18" in msg and "\n" not in msg


def test_unknown_arch_lists_valid_names():
    with pytest.raises(
        ConfigError, match=r"nearest: .*unetplusplus.*Valid: unetplusplus, unet, fpn"
    ):
        resolve_arch("unetpp")


@pytest.mark.parametrize("arch", ["unet", "fpn", "linknet", "deeplabv3plus"])
def test_other_architectures_build_with_three_channel_head(arch):
    gen = build_generator(arch, "resnet18", weights="none").eval()  # eval: ASPP pools to 1x1
    assert gen(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_auto_offline_falls_back_to_random_and_records_it(monkeypatch, caplog):
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    gen = build_generator(weights="auto")
    assert gen.weights_record.loaded == "random"
    assert "unreachable" in gen.weights_record.note
    assert "RANDOM init" in caplog.text


def test_imagenet_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("TOONCLIP_OFFLINE", "1")
    with pytest.raises(WeightsError, match="model.weights=imagenet.*model.weights=auto"):
        build_generator(weights="imagenet")


def test_weights_from_local_file(tmp_path):
    donor = build_generator(weights="none")
    path = tmp_path / "encoder.pth"
    torch.save(donor.net.encoder.model.state_dict(), path)  # a plain timm state dict
    gen = build_generator(weights=str(path))
    assert gen.weights_record.loaded == f"file:{path}"
    for (name, a), b in zip(
        donor.net.encoder.state_dict().items(), gen.net.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_missing_weights_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.weights=.*not a file"):
        build_generator(weights=str(tmp_path / "nope.pth"))


def test_blurred_skip_keeps_full_precision_under_bf16_autocast():
    """The blurred face is most of the output: a bf16 blur would round it by more than an
    8-bit level. With the zero-initialised head the output is the blurred face alone."""
    gen = build_generator(
        "unetplusplus", "mobilenetv3_large_100", weights="none", residual=True, residual_blur=2.0
    ).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = gen(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = gen(x)
    assert mixed.dtype == torch.float32
    assert (mixed - full).abs().max().item() < 1e-6


def test_generator_flops_are_counted_on_the_meta_device(monkeypatch):
    """compare counts every run's network at 256 px without running it; the blurred skip's
    float32 region must not push it onto a real forward pass."""
    from toonclip.models import cost

    gen = build_generator(
        "unetplusplus", "mobilenetv3_large_100", weights="none", residual=True, residual_blur=1.0
    )
    direct = cost.count_gflops_direct(gen, 64)

    def no_real_pass(*args):
        raise AssertionError("count_gflops fell back to a real forward pass")

    monkeypatch.setattr(cost, "count_gflops_direct", no_real_pass)
    assert cost.count_gflops(gen, 64) == pytest.approx(direct)


def _decoder_norms(gen) -> set[type]:
    kinds = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
    return {type(m) for m in gen.net.decoder.modules() if isinstance(m, kinds)}


@pytest.mark.parametrize(
    ("norm", "expected"),
    [("batchnorm", {nn.BatchNorm2d}), ("instancenorm", {nn.InstanceNorm2d}), ("none", set())],
)
def test_decoder_norm_sets_the_decoders_normalisation_only(norm, expected):
    gen = build_generator(weights="none", decoder_norm=norm)
    assert _decoder_norms(gen) == expected
    assert any(isinstance(m, nn.BatchNorm2d) for m in gen.net.encoder.modules())  # timm's own
    if norm == "instancenorm":  # a learnt scale and shift, as the BatchNorm it replaces has
        assert all(m.affine for m in gen.net.decoder.modules() if isinstance(m, nn.InstanceNorm2d))
    if norm == "none":  # the convolutions the norm followed get their bias back
        convs = [m for m in gen.net.decoder.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(c.bias is not None for c in convs)
    assert gen(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_smps_layernorm_decoder_is_broken_so_decoder_norm_does_not_offer_it():
    """smp 0.6 builds nn.LayerNorm(channels) and applies it to (N, C, H, W): it normalises over
    the width and fails when the width is not the channel count. If smp fixes it, this fails,
    and the option can be offered."""
    import segmentation_models_pytorch as smp

    net = smp.UnetPlusPlus(
        "resnet18", encoder_weights=None, classes=3, decoder_use_norm="layernorm"
    )
    with pytest.raises(RuntimeError, match="normalized_shape"):
        net(torch.rand(1, 3, 64, 64))
    with pytest.raises(
        ConfigError, match="decoder_norm=layernorm: .*width.*batchnorm, instancenorm, none"
    ):
        build_generator(weights="none", decoder_norm="layernorm")


def test_decoder_norm_on_an_arch_without_the_option_names_those_with_it():
    with pytest.raises(ConfigError, match="unknown model.decoder_norm 'group'"):
        build_generator(weights="none", decoder_norm="group")
    with pytest.raises(ConfigError, match="model.arch=fpn has no decoder norm.*unetplusplus, unet"):
        build_generator("fpn", "resnet18", weights="none", decoder_norm="none")
    # The default asks for nothing, so such an arch keeps smp's own decoder (FPN: GroupNorm).
    assert _decoder_norms(build_generator("fpn", "resnet18", weights="none")) == {nn.GroupNorm}


def test_drop_path_drops_residual_branches_in_training_only_and_keeps_the_state_dict():
    plain = build_generator(weights="none", residual=False)
    gen = build_generator(weights="none", residual=False, drop_path=0.2)
    rates = [m.drop_prob for m in gen.modules() if type(m).__name__ == "DropPath"]
    # timm ramps the rate over the blocks up to model.drop_path; none without it.
    assert rates and max(rates) == pytest.approx(0.2 * (len(rates) - 1) / len(rates), rel=0.2)
    assert not [m for m in plain.modules() if type(m).__name__ == "DropPath"]
    # No parameters of its own: a checkpoint loads into either network, and exports are the same.
    assert gen.state_dict().keys() == plain.state_dict().keys()
    gen.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    gen.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(gen(x), plain(x))
    gen.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(gen(x), gen(x))


def test_drop_path_on_an_smp_encoder_or_out_of_range_is_one_clear_error():
    with pytest.raises(
        ConfigError, match="model.drop_path=0.1: model.encoder=resnet18 .*tu-<name>"
    ):
        build_generator("unet", "resnet18", weights="none", drop_path=0.1)
    with pytest.raises(ConfigError, match=r"model.drop_path=1: use a rate in \[0, 1\)"):
        build_generator(weights="none", drop_path=1.0)
