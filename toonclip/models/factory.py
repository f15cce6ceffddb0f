"""The one place where architecture and encoder names become a network.

Names follow Lightning Flash's `SemanticSegmentation(head=..., backbone=...)` (head = architecture,
backbone = a timm model name) as well as segmentation-models-pytorch's own encoder names:

    build_generator("unetplusplus", "mobilenetv3_large_100")  # the network Flash built
    build_generator("unet", "efficientnet-b0")                 # an smp encoder
    build_generator("fpn", "tu-resnet18")                      # smp's explicit timm prefix
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging

import segmentation_models_pytorch as smp
from torch import nn

from toonclip.errors import ConfigError, WeightsError
from toonclip.models import weights as W
from toonclip.models.generator import Generator

log = logging.getLogger(__name__)

# Flash head names (and a few smp spellings) -> smp classes.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unetplusplus": smp.UnetPlusPlus,
    "unet": smp.Unet,
    "fpn": smp.FPN,
    "linknet": smp.Linknet,
    "manet": smp.MAnet,
    "pan": smp.PAN,
    "pspnet": smp.PSPNet,
    "deeplabv3": smp.DeepLabV3,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "upernet": smp.UPerNet,
}
ALIASES = {
    "unet++": "unetplusplus",
    "unet_plus_plus": "unetplusplus",
    "deeplabv3+": "deeplabv3plus",
}

# smp's default decoder widths; model.decoder_width scales them (smaller students, issue 11).
DECODER_WIDTHS: dict[str, dict[str, int | tuple[int, ...]]] = {
    "unetplusplus": {"decoder_channels": (256, 128, 64, 32, 16)},
    "unet": {"decoder_channels": (256, 128, 64, 32, 16)},
    "manet": {"decoder_channels": (256, 128, 64, 32, 16)},
    "fpn": {"decoder_pyramid_channels": 256, "decoder_segmentation_channels": 128},
    "pan": {"decoder_channels": 32},
    "deeplabv3": {"decoder_channels": 256},
    "deeplabv3plus": {"decoder_channels": 256},
    "upernet": {"decoder_channels": 256},
}

# model.decoder_norm -> smp's decoder_use_norm. smp 0.6 also offers "layernorm", but it builds
# nn.LayerNorm(channels) and applies it to (N, C, H, W) tensors: that normalises over the image's
# width, and fails unless the width equals the channel count (checked in tests/test_models.py).
DECODER_NORMS: dict[str, str | dict] = {
    "batchnorm": "batchnorm",
    "instancenorm": {"type": "instancenorm", "affine": True},
    "none": "identity",
}
# The archs whose smp class takes decoder_use_norm (read from smp, so a new release that adds it
# to another class needs no edit here).
DECODER_NORM_ARCHS = [
    a for a, cls in ARCHITECTURES.items() if "decoder_use_norm" in inspect.signature(cls).parameters
]


def resolve_arch(name: str) -> str:
    """Canonical architecture name, or ConfigError listing the valid ones."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key in ARCHITECTURES:
        return key
    raise ConfigError(_unknown("model.arch", name, list(ARCHITECTURES)))


@functools.lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def resolve_encoder(name: str) -> str:
    """smp encoder name for a Flash/timm/smp name, or ConfigError with the nearest match.

    Order: smp's explicit `tu-` prefix; smp's native encoders; any timm model (as `tu-<name>`).
    """
    name = str(name)
    smp_names = smp.encoders.get_encoder_names()
    if name.startswith("tu-"):
        if name[3:] in _timm_names():
            return name
        raise ConfigError(_unknown("model.encoder", name, [f"tu-{n}" for n in _timm_names()]))
    if name in smp_names:
        return name
    if name in _timm_names():
        return f"tu-{name}"
    raise ConfigError(_unknown("model.encoder", name, list(smp_names) + list(_timm_names())))


def valid_encoders() -> list[str]:
    """smp's own encoder names; any timm model name is valid too."""
    return list(smp.encoders.get_encoder_names())


def _unknown(option: str, name: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    shown = valid if len(valid) <= 20 else valid[:20] + [f"... ({len(valid)} in all)"]
    return f"unknown {option} '{name}'{hint}. Valid: {', '.join(shown)}"


def decoder_kwargs(arch: str, width: float) -> dict:
    """smp decoder arguments for a width multiplier: every decoder channel count times `width`,
    rounded, at least 4 (and a multiple of 4 where the default is one: grouped kernels like them).
    """
    width = float(width)
    if width == 1.0:
        return {}
    if not 0.0 < width <= 4.0:
        raise ConfigError(f"model.decoder_width={width:g}: use a multiplier in (0, 4], e.g. 0.25")
    if arch not in DECODER_WIDTHS:
        valid = ", ".join(DECODER_WIDTHS)
        raise ConfigError(
            f"model.decoder_width={width:g}: model.arch={arch} has no decoder width to scale "
            f"(its decoder follows the encoder's channels); use model.decoder_width=1 or one of {valid}"
        )

    def scale(c: int) -> int:
        return max(4, int(round(c * width / 4)) * 4)

    return {
        key: tuple(scale(c) for c in value) if isinstance(value, tuple) else scale(value)
        for key, value in DECODER_WIDTHS[arch].items()
    }


def decoder_norm_kwargs(arch: str, norm: str) -> dict:
    """smp's decoder_use_norm for model.decoder_norm; {} for smp's default (batchnorm)."""
    if norm == "layernorm":
        raise ConfigError(
            "model.decoder_norm=layernorm: smp's layernorm normalises over the image's width, not "
            f"its channels; use one of {', '.join(DECODER_NORMS)}"
        )
    if norm not in DECODER_NORMS:
        raise ConfigError(_unknown("model.decoder_norm", norm, list(DECODER_NORMS)))
    if norm == "batchnorm":
        return {}
    if arch not in DECODER_NORM_ARCHS:
        raise ConfigError(
            f"model.decoder_norm={norm}: model.arch={arch} has no decoder norm option in smp; use "
            f"model.decoder_norm=batchnorm, or a model.arch that has one: {', '.join(DECODER_NORM_ARCHS)}"
        )
    return {"decoder_use_norm": DECODER_NORMS[norm]}


def build_generator(
    arch: str = "unetplusplus",
    encoder: str = "mobilenetv3_large_100",
    weights: str = "auto",
    residual: bool = False,
    decoder_width: float = 1.0,
    residual_blur: float = 0.0,
    decoder_norm: str = "batchnorm",
    **smp_kwargs,
) -> Generator:
    """Build the generator with a 3-channel head.

    Args:
        arch: Flash head / smp architecture name (see ARCHITECTURES).
        encoder: Flash backbone (timm) name, smp encoder name, or `tu-<timm name>`.
        weights: encoder weights policy: auto | imagenet | none | path to a file.
        residual: output the face plus the network's output (see Generator).
        residual_blur: Gaussian sigma (px) of the face the residual output adds back; 0: as is.
        decoder_width: multiplier of smp's default decoder channels (0.25: a quarter as wide).
        decoder_norm: the decoder's normalisation: batchnorm (smp's default, as Flash built it;
            an arch without smp's option keeps its own) | instancenorm (per image, learnt scale
            and shift) | none (convolutions with a bias).
        smp_kwargs: passed to the smp class (decoder_channels, ...).
    """
    arch_key = resolve_arch(arch)
    smp_encoder = resolve_encoder(encoder)
    policy = W.parse_policy(weights, "model.weights")
    cls = ARCHITECTURES[arch_key]
    kwargs = dict(encoder_name=smp_encoder, in_channels=3, classes=3, activation=None)
    kwargs.update(decoder_kwargs(arch_key, decoder_width), **smp_kwargs)
    kwargs.update(decoder_norm_kwargs(arch_key, str(decoder_norm).lower()))

    def make(encoder_weights):
        try:
            return cls(encoder_weights=encoder_weights, **kwargs)
        except (ValueError, KeyError, AssertionError, RuntimeError, TypeError) as exc:
            if encoder_weights is not None:
                raise
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"model.arch={arch} cannot use model.encoder={encoder}: {msg}"
            ) from exc

    record = W.WeightsRecord("encoder", str(weights), "random")
    if policy == "none":
        net = make(None)
    elif policy in ("auto", "imagenet"):
        net, record = _pretrained(make, policy, smp_encoder)
    else:
        net = make(None)
        W.load_matching(net.encoder, W.load_state_dict_file(policy), policy, "encoder")
        record = W.WeightsRecord("encoder", policy, f"file:{policy}")
    return Generator(net, arch_key, encoder, record, residual=residual, residual_blur=residual_blur)


def generator_from_config(model_cfg, weights: str | None = None) -> Generator:
    """build_generator from a run's `model` config group; `weights` overrides model.weights
    (loading a checkpoint passes "none": its state dict replaces whatever was loaded)."""
    return build_generator(
        model_cfg.arch,
        model_cfg.encoder,
        weights=model_cfg.get("weights", "auto") if weights is None else weights,
        residual=bool(model_cfg.get("residual", False)),
        decoder_width=float(model_cfg.get("decoder_width", 1.0)),
        residual_blur=float(model_cfg.get("residual_blur", 0.0) or 0.0),
        decoder_norm=model_cfg.get("decoder_norm", "batchnorm"),
    )


def _pretrained(make, policy: str, smp_encoder: str) -> tuple[nn.Module, W.WeightsRecord]:
    # timm and smp >= 0.5 both fetch from the Hugging Face hub; with the host unreachable we
    # still try, in offline mode, because the weights may already be in the local hub cache.
    online = W.go_offline_unless_reachable("huggingface.co")
    try:
        # smp wants True for timm ("tu-") encoders (the tag picks the weights), a name otherwise.
        net = make(True if smp_encoder.startswith("tu-") else "imagenet")
        return net, W.WeightsRecord("encoder", policy, "imagenet")
    except Exception as exc:  # noqa: BLE001 - any download/cache failure means "unavailable"
        if online:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        else:
            reason = "huggingface.co unreachable and not in the local hub cache"
        if policy == "imagenet":
            raise WeightsError(
                f"model.weights=imagenet: cannot load ImageNet weights for {smp_encoder}: {reason}. "
                "Use model.weights=auto to fall back, or model.weights=/path/to/file"
            ) from exc
        W.warn_fallback(f"encoder {smp_encoder}", reason)
        return make(None), W.WeightsRecord("encoder", policy, "random", note=reason)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_generator_state(generator: Generator, state: dict) -> None:
    """Load a generator state dict, raising WeightsError on a mismatch."""
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(
            f"checkpoint does not match {generator.arch}/{generator.encoder}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
