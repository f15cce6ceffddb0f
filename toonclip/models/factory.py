"""The generator factory: names and options in, a Generator with a 3-channel head out.

    build_generator("unetplusplus", "mobilenetv3_large_100")  # the network Flash built
    build_generator("unet", "efficientnet-b0")                 # an smp encoder
    build_generator("fpn", "tu-resnet18")                      # smp's explicit timm prefix

Names are resolved in `names.py`, option values become smp arguments in `options.py`.
"""

from __future__ import annotations

from torch import nn

from toonclip.errors import ConfigError, WeightsError
from toonclip.models import weights as W
from toonclip.models.generator import Generator
from toonclip.models.names import ARCHITECTURES, resolve_arch, resolve_encoder, valid_encoders
from toonclip.models.options import decoder_kwargs, decoder_norm_kwargs, drop_path_kwargs

__all__ = [
    "ARCHITECTURES",
    "build_generator",
    "count_parameters",
    "generator_from_config",
    "load_generator_state",
    "resolve_arch",
    "resolve_encoder",
    "valid_encoders",
]


def build_generator(
    arch: str = "unetplusplus",
    encoder: str = "mobilenetv3_large_100",
    weights: str = "auto",
    residual: bool = False,
    decoder_width: float = 1.0,
    residual_blur: float = 0.0,
    decoder_norm: str = "batchnorm",
    drop_path: float = 0.0,
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
        drop_path: timm's stochastic depth in the encoder (`drop_path_rate`; training only, no
            parameters, so checkpoints and exports are the same network); a timm encoder only.
        smp_kwargs: passed to the smp class (decoder_channels, ...).
    """
    arch_key = resolve_arch(arch)
    smp_encoder = resolve_encoder(encoder)
    policy = W.parse_policy(weights, "model.weights")
    cls = ARCHITECTURES[arch_key]
    kwargs = dict(encoder_name=smp_encoder, in_channels=3, classes=3, activation=None)
    kwargs.update(decoder_kwargs(arch_key, decoder_width), **smp_kwargs)
    kwargs.update(decoder_norm_kwargs(arch_key, str(decoder_norm).lower()))
    kwargs.update(drop_path_kwargs(smp_encoder, drop_path))

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
        drop_path=float(model_cfg.get("drop_path", 0.0) or 0.0),
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
