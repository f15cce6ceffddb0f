"""Temporal stability of a video model: flicker and warping error (`toonclip temporal`).

Frames everywhere are (H, W, 3) uint8 RGB arrays, given as lists or any iterable; a clip is T >= 2
frames of one size, and a model's output clip has the input's length and size.

- `flicker(inputs, outputs)`: how much the output changes from frame to frame, relative to how
  much the input does. 1.0 = as much as the input; above 1 the model adds change (flicker), below
  1 it smooths it away; 0 = a frozen output.
- `warping_error(inputs, outputs)`: the warping error E_warp of Lai et al., "Learning Blind Video
  Temporal Consistency" (ECCV 2018): the previous output frame is warped onto the current one
  with the optical flow of the INPUT frames, and the squared difference is averaged over the
  pixels that the flow can follow (occluded and out-of-frame pixels masked). A frozen output has
  flicker 0 but a high warping error (it does not follow the motion), and a model that adds
  noise has both high; so the two are read together.
- `warping_error(inputs, inputs)` is the input clip's own warping error: what flow errors and
  interpolation alone cost, the floor an output's figure is read against.

The command and video files: toonclip/evaluation/temporal_cli.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from toonclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FLOW_METHODS = ("dis", "farneback")

Frames = Iterable[np.ndarray]


@dataclass
class PairWarp:
    """How frame t is predicted from frame t-1 of the input clip.

    map_x, map_y: (H, W) float32 source coordinates in frame t-1 of each pixel of frame t (for
    cv2.remap); valid: (H, W) bool, the pixels the flow can follow (not occluded, not on a motion
    boundary, source inside the frame): Lai et al.'s non-occlusion mask M_t.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    valid: np.ndarray


def _clip(frames: Frames, what: str) -> list[np.ndarray]:
    clip = [np.asarray(f) for f in frames]
    if len(clip) < 2:
        raise DataError(f"{what}: {len(clip)} frame(s); the temporal metrics need at least 2")
    shape = clip[0].shape
    if len(shape) != 3 or shape[2] != 3:
        raise DataError(f"{what}: frames must be (H, W, 3) RGB arrays, got {shape}")
    if any(f.shape != shape for f in clip):
        raise DataError(f"{what}: frames differ in size; every frame must be {shape}")
    return clip


def _pair(inputs: Frames, outputs: Frames) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ins, outs = _clip(inputs, "input clip"), _clip(outputs, "output clip")
    if len(ins) != len(outs) or ins[0].shape != outs[0].shape:
        raise DataError(
            f"output clip ({len(outs)} frames of {outs[0].shape}) does not match the input clip "
            f"({len(ins)} frames of {ins[0].shape})"
        )
    return ins, outs


def _mean_abs_change(clip: list[np.ndarray]) -> float:
    """Mean over t of mean |f_t - f_(t-1)|, frames read as float in [0, 1]."""
    steps = [np.abs(b.astype(np.float32) - a.astype(np.float32)).mean() for a, b in pairwise(clip)]
    return float(np.mean(steps)) / 255


def flicker(inputs: Frames, outputs: Frames) -> float:
    """Output change between consecutive frames relative to the input's (>= 0, unitless).

    inputs, outputs: T >= 2 frames each, (H, W, 3) uint8 RGB, same sizes. Returns
    mean_t mean|out_t - out_(t-1)| / mean_t mean|in_t - in_(t-1)|: 1.0 when the output changes
    exactly as much as the input (the identity model), above 1 when the model adds change of its
    own (flicker), 0 for a frozen output. Raises DataError for a still input clip (no change to
    compare with: the ratio is undefined).
    """
    ins, outs = _pair(inputs, outputs)
    base = _mean_abs_change(ins)
    if base == 0:
        raise DataError(
            "the input frames do not change (a still clip): flicker is undefined; use a clip "
            "with motion"
        )
    return _mean_abs_change(outs) / base


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow from frame `a` to frame `b`: (H, W, 2) float32 (dx, dy) in pixels.

    a, b: (H, W, 3) uint8 RGB. a(x) ~ b(x + flow(x)). method: `dis` (OpenCV DIS, preset MEDIUM)
    or `farneback` (cv2.calcOpticalFlowFarneback with OpenCV's documented example settings).
    """
    ga, gb = (cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (a, b))
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ConfigError(f"flow={method}: use flow={' or flow='.join(FLOW_METHODS)}")


def _sq(v: np.ndarray) -> np.ndarray:
    return v[..., 0] ** 2 + v[..., 1] ** 2


def pair_warp(prev: np.ndarray, cur: np.ndarray, method: str = "dis") -> PairWarp:
    """Backward warp from input frame t-1 (`prev`) to frame t (`cur`), with its validity mask.

    The flow b = F(t -> t-1) gives each pixel of frame t its source in frame t-1. A pixel is
    valid when (Sundaram et al. 2010, Ruder et al. 2016, as in Lai et al.'s released code):
    - forward-backward consistent: with f the flow t-1 -> t sampled at x + b(x),
      |b + f|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5 (else the pixel is occluded in frame t-1);
    - not on a motion boundary: |grad b_x|^2 + |grad b_y|^2 <= 0.01 |b|^2 + 0.002;
    - its source x + b(x) lies inside frame t-1 (content entering at the edge has no source).
    """
    back = optical_flow(cur, prev, method)
    fwd = optical_flow(prev, cur, method)
    h, w = back.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = gx + back[..., 0], gy + back[..., 1]
    fwd_at = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    occluded = _sq(back + fwd_at) > 0.01 * (_sq(back) + _sq(fwd_at)) + 0.5
    # Forward differences, zero on the last row/column, as in Lai et al.'s compute_flow_gradients.
    du, dv = np.zeros_like(back), np.zeros_like(back)
    du[:, :-1] = back[:, :-1] - back[:, 1:]
    dv[:-1] = back[:-1] - back[1:]
    boundary = _sq(du) + _sq(dv) > 0.01 * _sq(back) + 0.002
    outside = (map_x < 0) | (map_x > w - 1) | (map_y < 0) | (map_y > h - 1)
    return PairWarp(map_x, map_y, ~(occluded | boundary | outside))


def clip_warps(inputs: Frames, method: str = "dis") -> list[PairWarp]:
    """The T-1 warps t-1 -> t of an input clip (T >= 2 frames of (H, W, 3) uint8 RGB).

    Computed once per clip and passed to `warping_error(..., warps=)` for every model.
    """
    clip = _clip(inputs, "input clip")
    return [pair_warp(a, b, method) for a, b in pairwise(clip)]


def warping_error(
    inputs: Frames,
    outputs: Frames,
    method: str = "dis",
    warps: Sequence[PairWarp] | None = None,
) -> float:
    """Lai et al.'s warping error of `outputs`, with the optical flow of `inputs` (>= 0).

    inputs, outputs: T >= 2 frames each, (H, W, 3) uint8 RGB, same sizes. With frames as float
    RGB in [0, 1], O_t the output and W(O_(t-1)) the previous output warped onto frame t:

        E_warp = 1/(T-1) sum_t  sum_x M_t(x) |O_t(x) - W(O_(t-1))(x)|^2 / (3 sum_x M_t(x))

    i.e. the mean squared difference per channel over the valid pixels M_t (`pair_warp`), then
    the mean over frame pairs. Per channel, as Lai et al.'s evaluate_WarpError.py computes it (its
    mask is read with 3 channels); the paper's norm summed over RGB is 3 times this. Pairs
    without a valid pixel are skipped. warps: `clip_warps(inputs)`, to reuse across models.
    `warping_error(inputs, inputs)` is the input clip's own figure.
    """
    ins, outs = _pair(inputs, outputs)
    warps = clip_warps(ins, method) if warps is None else warps
    if len(warps) != len(outs) - 1:
        raise DataError(f"{len(warps)} warps for a clip of {len(outs)} frames; need one per pair")
    errors = []
    for (prev, cur), warp in zip(pairwise(outs), warps, strict=True):
        n = int(warp.valid.sum())
        if n == 0:
            continue  # all occluded (a cut): nothing to compare
        prev_f, cur_f = prev.astype(np.float32) / 255, cur.astype(np.float32) / 255
        warped = cv2.remap(prev_f, warp.map_x, warp.map_y, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
        errors.append(float(((cur_f - warped)[warp.valid] ** 2).sum()) / (3 * n))
    if not errors:
        raise DataError("every pixel of every frame pair is occluded: no warping error to measure")
    return float(np.mean(errors))


def temporal_metrics(
    inputs: Frames,
    outputs: Frames,
    method: str = "dis",
    warps: Sequence[PairWarp] | None = None,
    input_error: float | None = None,
) -> dict:
    """flicker, warp_error and warp_error_input of one output clip (see the module docstring).

    Returns {"frames": T, "flicker", "warp_error", "warp_error_input"} as floats. warps and
    input_error: from an earlier call on the same inputs, so a clip's flow is computed once.
    """
    ins, outs = _pair(inputs, outputs)
    warps = clip_warps(ins, method) if warps is None else warps
    if input_error is None:
        input_error = warping_error(ins, ins, warps=warps)
    return {
        "frames": len(ins),
        "flicker": flicker(ins, outs),
        "warp_error": warping_error(ins, outs, warps=warps),
        "warp_error_input": input_error,
    }
