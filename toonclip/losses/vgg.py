"""Frozen VGG16 feature extractor (torchvision), cut after the deepest layer the loss needs."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from toonclip.errors import ConfigError, WeightsError
from toonclip.models import weights as W

log = logging.getLogger(__name__)

# Names of torchvision's vgg16().features indices (BasicSR's naming).
VGG16_LAYERS = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}  # fmt: skip


# How a VGG16 without ImageNet weights is initialised (see random_init).
RANDOM_INITS = ("kaiming", "torch")


class VGGFeatures(nn.Module):
    """forward(x): x (N, 3, H, W) float RGB in [0, 1] -> {layer name: (N, C, H/k, W/k)}.

    ImageNet normalisation happens inside, so callers pass images as they are. `random_init`
    applies only when the weights end up random (policy none, or auto offline).
    """

    def __init__(self, layers: list[str], weights: str = "auto", random_init: str = "kaiming"):
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown or not layers:
            raise ConfigError(
                f"unknown VGG16 layer(s) {unknown} in loss layers; valid: {', '.join(VGG16_LAYERS)}"
            )
        self.layers = sorted(layers, key=VGG16_LAYERS.get)
        self.index = {VGG16_LAYERS[name]: name for name in self.layers}
        if random_init not in RANDOM_INITS:
            raise ConfigError(
                f"loss.vgg_random_init={random_init}: use one of {', '.join(RANDOM_INITS)}"
            )
        features, self.weights_record = _load_vgg16(weights)
        if self.weights_record.loaded == "random":
            init_random(features, random_init)
            note = self.weights_record.note
            self.weights_record.note = f"{note}; " * bool(note) + f"{random_init} init"
        self.features = features[: max(self.index) + 1]
        self.features.requires_grad_(False).eval()
        W.register_imagenet_stats(self)

    def train(self, mode: bool = True):
        # Frozen: stays in eval mode whatever Lightning does to the parent module.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.index:
                out[self.index[i]] = h
        return out


def init_random(features: nn.Sequential, how: str) -> None:
    """Initialise a random VGG16 trunk so that it works as a perceptual loss.

    "torch": nn.Conv2d's default (uniform, variance 1/(3 fan_in)). Each conv+ReLU shrinks the
    signal, so a small change to the image moves relu3_3 ~1/100 and relu4_3 ~1/1000 as much as
    relu1_2, and their Gram matrices 1e-4 to 1e-6 as much (measured on random 128 px images):
    deep perceptual and all style terms vanish, leaving relu1_2, close to a blurry pixel loss.
    "kaiming": He normal (fan_in, ReLU gain), zero bias, which keeps the second moment constant
    through depth (He et al., ICCV 2015): every layer then moves about as much as relu1_2. Random-weight networks
    initialised this way are usable perceptual/style losses (He et al., NeurIPS 2016; Liu et
    al., "Generic Perceptual Loss", CVPR 2021). The seed is fixed so that runs compare.
    """
    if how == "torch":
        return
    gen = torch.Generator().manual_seed(0)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                m.bias.zero_()


def _features() -> nn.Sequential:
    # torchvision's VGG16 convolutional trunk alone: building the whole classifier would spend
    # seconds initialising 120M parameters that the loss never uses.
    return make_layers(cfgs["D"], batch_norm=False)


def _load_imagenet(weights: VGG16_Weights) -> nn.Sequential:
    features = _features()
    state = weights.get_state_dict(progress=True, check_hash=True)
    features.load_state_dict(
        {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    )
    return features


def _load_vgg16(policy_value: str) -> tuple[nn.Sequential, W.WeightsRecord]:
    policy = W.parse_policy(policy_value, "loss.vgg_weights")
    weights = VGG16_Weights.IMAGENET1K_V1
    if policy == "none":
        return _features(), W.WeightsRecord("vgg16", policy, "random")
    if policy not in ("auto", "imagenet"):
        features = _features()
        W.load_matching(features, W.load_state_dict_file(policy), policy, "vgg16")
        return features, W.WeightsRecord("vgg16", policy, f"file:{policy}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file() or W.can_reach("download.pytorch.org"):
        try:
            # torchvision loads from $TORCH_HOME/hub/checkpoints first, downloading only if absent.
            return _load_imagenet(weights), W.WeightsRecord("vgg16", policy, "imagenet")
        except Exception as exc:  # noqa: BLE001 - corrupt cache or failed download
            reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = f"download.pytorch.org unreachable and {cached} absent"
    if policy == "imagenet":
        raise WeightsError(
            f"loss.vgg_weights=imagenet: cannot load VGG16 ImageNet weights ({reason}). "
            f"Copy vgg16-397923af.pth to {cached.parent}, pass loss.vgg_weights=/path/to/file, "
            "or use loss.vgg_weights=auto"
        )
    W.warn_fallback("VGG16 (loss)", reason)
    return _features(), W.WeightsRecord("vgg16", policy, "random", note=reason)
