"""Architecture and encoder names: the one place where a string becomes an smp class or encoder.

Names follow Lightning Flash's `SemanticSegmentation(head=..., backbone=...)` (head = architecture,
backbone = a timm model name) as well as segmentation-models-pytorch's own encoder names:
"unetplusplus" + "mobilenetv3_large_100" is the network Flash built; "efficientnet-b0" is an smp
encoder; "tu-resnet18" is smp's explicit timm prefix. An unknown name lists the valid ones.
"""

from __future__ import annotations

import difflib
import functools

import segmentation_models_pytorch as smp
from torch import nn

from toonclip.errors import ConfigError

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


def resolve_arch(name: str) -> str:
    """Canonical architecture name, or ConfigError listing the valid ones."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key in ARCHITECTURES:
        return key
    raise ConfigError(unknown("model.arch", name, list(ARCHITECTURES)))


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
        raise ConfigError(unknown("model.encoder", name, [f"tu-{n}" for n in _timm_names()]))
    if name in smp_names:
        return name
    if name in _timm_names():
        return f"tu-{name}"
    raise ConfigError(unknown("model.encoder", name, list(smp_names) + list(_timm_names())))


def valid_encoders() -> list[str]:
    """smp's own encoder names; any timm model name is valid too."""
    return list(smp.encoders.get_encoder_names())


def unknown(option: str, name: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    shown = valid if len(valid) <= 20 else valid[:20] + [f"... ({len(valid)} in all)"]
    return f"unknown {option} '{name}'{hint}. Valid: {', '.join(shown)}"
