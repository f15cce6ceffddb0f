"""`region=person|background`: stylise only the person, or only what is around them.

A masker (`toonclip.stylize.masks`: a segmentation `.onnx` or GrabCut) gives the person
probability; it is cut at 0.5, the chosen region's binary mask is feathered (`feather_alpha`),
and the stylised frame is composited over the original through it. In video the soft mask is
averaged over frames first (`MaskSmoother`), so the cut does not crawl from frame to frame.
Images (H, W, 3) uint8 RGB; masks (H, W) float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REGIONS = ("all", "person", "background")


def feather_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] from a soft mask: cut at 0.5, then a soft seam.

    The seam is a Gaussian blur (sigma = feather / 3) truncated at `feather` px, so alpha is
    exactly 0 or 1 beyond `feather` px from the cut and pixels there keep exactly one source.
    feather=0: a hard edge.
    """
    import cv2

    hard = (np.asarray(mask, np.float32) > 0.5).astype(np.float32)
    if feather <= 0 or hard.min() == hard.max():
        return hard
    radius = int(np.ceil(feather))
    alpha = cv2.GaussianBlur(
        hard, (2 * radius + 1, 2 * radius + 1), feather / 3.0, borderType=cv2.BORDER_REPLICATE
    )
    # the kernel sums to 1 only up to float rounding: snap the far sides to exactly 0 and 1
    alpha[alpha < 1e-5] = 0.0
    alpha[alpha > 1 - 1e-5] = 1.0
    return alpha


class MaskSmoother:
    """Exponential moving average of the soft person mask over video frames.

    `alpha` is the weight of the new frame (1: no smoothing). Below 0.5 the cut at 0.5 follows
    the last few frames' majority rather than the newest frame alone: at 0.35, a mask whose edge
    jitters by +-3 px flips about 0.57 times as many pixels per frame, at the price of about two
    frames of lag behind a moving person. A change of frame size restarts.
    """

    def __init__(self, alpha: float = 0.35):
        self.alpha, self.state = float(alpha), None

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, np.float32)
        if self.state is None or self.state.shape != mask.shape:
            self.state = mask.copy()
        else:
            self.state += self.alpha * (mask - self.state)
        return self.state.copy()


class RegionStylizer:
    """Callable (H, W, 3) uint8 -> (H, W, 3) uint8: the model applied to one region only.

    stylize: the whole-frame stylizer ((H, W, 3) uint8 -> same). masker: (H, W, 3) uint8 ->
    (H, W) person probability (see `toonclip.stylize.masks`). region: person | background.
    feather: seam half-width in px. strength: photo -> cartoon blend inside the region.
    smoother: a `MaskSmoother` for video (None for still images). After a call, `last_alpha`
    holds the (H, W) float32 weight of the cartoon.
    """

    def __init__(
        self,
        stylize: Callable,
        masker: Callable,
        region: str = "person",
        feather: float = 8.0,
        strength: float = 1.0,
        smoother: MaskSmoother | None = None,
    ):
        if region not in REGIONS[1:]:
            raise ValueError(f"region must be person or background, not {region!r}")
        self.stylize, self.masker, self.smoother = stylize, masker, smoother
        self.region, self.feather, self.strength = region, float(feather), float(strength)
        self.last_alpha: np.ndarray | None = None

    @property
    def source(self) -> str:
        """The mask's source in a word or two: `grabcut` or the model file's name."""
        return getattr(self.masker, "name", type(self.masker).__name__)

    def alpha(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 in [0, 1]: how much of the cartoon each pixel gets."""
        mask = self.masker(image)
        if self.smoother is not None:
            mask = self.smoother(mask)
        alpha = feather_alpha(mask, self.feather)
        if self.region == "background":
            alpha = 1.0 - alpha
        return alpha * np.float32(np.clip(self.strength, 0.0, 1.0))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        alpha = self.last_alpha = self.alpha(image)
        if not alpha.any():  # nothing to stylise: skip the model
            return image.copy()
        toon = self.stylize(image).astype(np.float32)
        out = image.astype(np.float32)
        out += (toon - out) * alpha[..., None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
