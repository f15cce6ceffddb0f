"""Weighted VGG perceptual loss plus Gram-matrix style loss (after BasicSR's PerceptualLoss)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from toonclip.errors import ConfigError
from toonclip.losses.edges import gradient_l1
from toonclip.losses.ssim import ssim
from toonclip.losses.vgg import VGGFeatures

CRITERIA = {"l1": F.l1_loss, "l2": F.mse_loss, "mse": F.mse_loss}


def pick_criterion(key: str, name: str):
    """CRITERIA[name] for `loss.<key>`; an unknown name is one line naming the option."""
    if name not in CRITERIA:
        raise ConfigError(f"loss.{key}={name}: use one of {', '.join(CRITERIA)}")
    return CRITERIA[name]


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices, normalised by C*H*W; computed in float32."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualStyleLoss(nn.Module):
    """total = perceptual_weight * sum_l w_l * crit(phi_l(pred), phi_l(target))
             + style_weight * sum_l s_l * crit(G(phi_l(pred)), G(phi_l(target)))
             + pixel_weight * pixel_crit(pred, target)  (L1 by default)
             + ssim_weight * (1 - SSIM(pred, target))      (losses/ssim.py: the val metric's SSIM)
             + edge_weight * L1(grad(pred), grad(target))  (losses/edges.py: x and y differences)

    forward(pred, target): both (N, 3, H, W) float RGB, nominally in [0, 1] (VGG normalisation is
    applied inside). Returns (total, parts) where parts maps "perceptual", "style", "pixel",
    "dssim" (the 1 - SSIM term; "ssim" is the val metric's name) and "edge" to detached scalars,
    each already multiplied by its global weight; a term of weight 0 is neither computed nor named. Target features are computed without gradients.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float],
        style_layer_weights: Mapping[str, float] | None = None,
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        pixel_weight: float = 0.0,
        ssim_weight: float = 0.0,
        criterion: str = "l1",
        vgg_weights: str = "auto",
        vgg_random_init: str = "kaiming",
        edge_weight: float = 0.0,
        pixel_criterion: str = "l1",
    ):
        super().__init__()
        self.criterion = pick_criterion("criterion", criterion)
        self.pixel_criterion = pick_criterion("pixel_criterion", pixel_criterion)
        # A weight of 0 drops the layer: config files merge mappings, so 0 is how an experiment
        # removes a layer that the default loss uses.
        self.layer_weights = {k: float(w) for k, w in (layer_weights or {}).items() if w}
        style = self.layer_weights if style_layer_weights is None else style_layer_weights
        self.style_layer_weights = {k: float(w) for k, w in style.items() if w}
        self.perceptual_weight, self.style_weight = float(perceptual_weight), float(style_weight)
        self.pixel_weight, self.ssim_weight = float(pixel_weight), float(ssim_weight)
        self.edge_weight = float(edge_weight)
        layers = set()
        if self.perceptual_weight > 0:
            layers |= set(self.layer_weights)
        if self.style_weight > 0:
            layers |= set(self.style_layer_weights)
        self.vgg = VGGFeatures(sorted(layers), vgg_weights, vgg_random_init) if layers else None

    @property
    def weights_record(self):
        return self.vgg.weights_record if self.vgg is not None else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        total = pred.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        if self.vgg is not None:
            pred_f = self.vgg(pred)
            with torch.no_grad():
                target_f = self.vgg(target)
            if self.perceptual_weight > 0:
                term = sum(
                    w * self.criterion(pred_f[k].float(), target_f[k].float())
                    for k, w in self.layer_weights.items()
                )
                total = total + self.perceptual_weight * term
                parts["perceptual"] = (self.perceptual_weight * term).detach()
            if self.style_weight > 0:
                # Gram matrices in float32: under fp16 autocast the products overflow.
                with torch.autocast(device_type=pred.device.type, enabled=False):
                    term = sum(
                        w * self.criterion(gram(pred_f[k]), gram(target_f[k]))
                        for k, w in self.style_layer_weights.items()
                    )
                total = total + self.style_weight * term
                parts["style"] = (self.style_weight * term).detach()
        if self.pixel_weight > 0:
            term = self.pixel_criterion(pred.float(), target.detach().float())
            total = total + self.pixel_weight * term
            parts["pixel"] = (self.pixel_weight * term).detach()
        if self.ssim_weight > 0:
            term = 1 - ssim(pred, target.detach())
            total = total + self.ssim_weight * term
            parts["dssim"] = (self.ssim_weight * term).detach()
        if self.edge_weight > 0:
            term = gradient_l1(pred, target.detach())
            total = total + self.edge_weight * term
            parts["edge"] = (self.edge_weight * term).detach()
        return total, parts
