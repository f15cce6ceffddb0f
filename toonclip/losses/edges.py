"""Edge term: L1 between the image gradients of prediction and target.

The cartoons' outlines are steps of a few pixels; L1 and SSIM on pixels are satisfied by a soft
ramp where the network is unsure of the step's place. An L1 on the finite differences scores the
step itself (Mathieu et al., ICLR 2016, "gradient difference loss"; MPRNet's edge loss is the
same idea on a Laplacian). Measured as `loss.edge_weight` in docs/recipe.md ("Edge term").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) -> (dx (N, C, H, W-1), dy (N, C, H-1, W)): forward differences, per channel."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scalar: mean |dx(pred) - dx(target)| + mean |dy(pred) - dy(target)|, in float32.

    pred, target: (N, C, H, W) float, nominally [0, 1]; the result is in [0, 4], and 0 where the
    two differ by a constant only.
    """
    (px, py), (tx, ty) = image_gradients(pred.float()), image_gradients(target.float())
    return F.l1_loss(px, tx) + F.l1_loss(py, ty)
