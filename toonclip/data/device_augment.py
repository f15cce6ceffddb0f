"""Paired augmentation of a whole batch on the training device (`data.augment.device: gpu`).

On a GPU the CPU-side albumentations pipeline (~100 img/s per loader worker at 256 px) cannot
feed a network that trains at several hundred img/s. Here one random affine map per sample
(crop, flip, rotation, scale, shift: the same parameters as `data.augment`) is built as a 2x3
matrix and applied to face and cartoon by one `grid_sample` each, so both get exactly the same
geometry; colour jitter touches the face only. The CPU path (augment.py, ReplayCompose) stays
the default; this one is used when the config asks for it, on any device (tests run it on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from toonclip.data.augment import resolve


def _uniform(n: int, low: float, high: float, gen, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


class BatchPairAugment:
    """Callable (face, cartoon) -> (face, cartoon) on float (N, 3, H, W) batches in [0, 1].

    Outputs are (N, 3, size, size). Geometry as in augment.build_geometric: a random resized
    crop (area fraction `crop_scale`, aspect `crop_ratio`), a horizontal flip (`hflip_p`) and,
    with probability `affine_p`, rotation ±`rotate` degrees, scale in `scale`, shift ±`translate`
    of the side; borders reflect. Colour jitter (brightness, contrast, saturation; no hue) with
    probability `color_jitter.p`, then Gaussian noise (std drawn per sample from `face_noise.std`,
    a fraction of full scale) with probability `face_noise.p`, face only.
    """

    def __init__(self, size: int, cfg: Mapping, seed: int | None = None):
        self.size = int(size)
        self.cfg = resolve(cfg)
        self.seed = seed
        self._gen: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._gen:
            self._gen[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen[device]

    def matrices(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates (normalised, [-1, 1])."""
        c, g = self.cfg, self._generator(device)
        area = _uniform(n, *c["crop_scale"], g, device)
        log_ratio = _uniform(n, *(math.log(r) for r in c["crop_ratio"]), g, device)
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = _uniform(n, -1.0, 1.0, g, device) * (1 - w)
        cy = _uniform(n, -1.0, 1.0, g, device) * (1 - h)
        flip = torch.where(torch.rand(n, generator=g, device=device) < c["hflip_p"], -1.0, 1.0)
        on = torch.rand(n, generator=g, device=device) < c["affine_p"]
        angle = torch.where(on, _uniform(n, -c["rotate"], c["rotate"], g, device), 0.0)
        scale = torch.where(on, _uniform(n, *c["scale"], g, device), 1.0)
        tx = torch.where(on, _uniform(n, -c["translate"], c["translate"], g, device) * 2, 0.0)
        ty = torch.where(on, _uniform(n, -c["translate"], c["translate"], g, device) * 2, 0.0)
        # Output pixel -> (inverse affine: rotate by -angle, divide by scale, shift) -> flip ->
        # position inside the crop window -> input pixel.
        rad = torch.deg2rad(angle)
        cos, sin = rad.cos() / scale, rad.sin() / scale
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = w * flip * cos, w * flip * sin, cx
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = -h * sin, h * cos, cy
        theta[:, 0, 2] -= w * flip * (cos * tx + sin * ty)
        theta[:, 1, 2] -= h * (-sin * tx + cos * ty)
        return theta

    def _per_sample(self, key: str, face: torch.Tensor):
        """(options, n, device, generator, (n, 1, 1, 1) bool 'on' mask), or None when `key` is off."""
        opts = self.cfg.get(key) or {}
        if not opts or opts.get("p", 0) <= 0:
            return None
        n, device, g = face.shape[0], face.device, self._generator(face.device)
        on = (torch.rand(n, generator=g, device=device) < opts["p"]).view(n, 1, 1, 1)
        return opts, n, device, g, on

    def _jitter(self, face: torch.Tensor) -> torch.Tensor:
        if (drawn := self._per_sample("color_jitter", face)) is None:
            return face
        j, n, device, g, on = drawn

        def factor(amount: float) -> torch.Tensor:
            return _uniform(n, 1 - amount, 1 + amount, g, device).view(n, 1, 1, 1)

        out = face * factor(j["brightness"])
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * factor(j["contrast"]) + mean
        gray = (out * out.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out = (out - gray) * factor(j["saturation"]) + gray
        return torch.where(on, out.clamp(0, 1), face)

    def _noise(self, face: torch.Tensor) -> torch.Tensor:
        if (drawn := self._per_sample("face_noise", face)) is None:
            return face
        nz, n, device, g, on = drawn
        std = _uniform(n, *nz["std"], g, device).view(n, 1, 1, 1)
        noise = torch.randn(face.shape, generator=g, device=device, dtype=face.dtype)
        return torch.where(on, (face + noise * std).clamp(0, 1), face)

    def __call__(
        self, face: torch.Tensor, cartoon: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = face.shape[0]
        theta = self.matrices(n, face.device)
        grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
        # Downscaling with bilinear sampling aliases; pre-shrink to about twice the output first.
        both = torch.cat([face, cartoon], 1)
        if both.shape[-1] > 2 * self.size:
            both = F.interpolate(both, size=2 * self.size, mode="area")
        out = F.grid_sample(
            both.float(), grid.to(both.dtype), mode="bilinear", padding_mode="reflection",
            align_corners=False,
        )  # fmt: skip
        return self._noise(self._jitter(out[:, :3])), out[:, 3:]
