"""DistillModule: the student (the run's `model`) learns the frozen teacher's outputs.

Loss per batch: `teacher_weight` x loss(student, teacher(face)) on every face, plus
`paired_weight` x loss(student, cartoon) on the faces that have a real cartoon (unpaired faces
from `data.extra_faces` have none). The loss is the run's `loss` group (L1 + SSIM by default).
The teacher runs once per batch, in eval mode, without gradients, and is never saved in the
student's checkpoint: `toonclip.inference` loads a student like any other run.
"""

from __future__ import annotations

import torch
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from toonclip.inference import load_checkpoint, resolve_checkpoint
from toonclip.precision import full_precision
from toonclip.training.module import ToonModule


class FrozenTeacher:
    """The teacher generator outside the module tree: no parameters of the student's module, no
    optimiser state, no checkpoint entries, and `deepcopy` (the EMA callback copies the whole
    LightningModule) shares it instead of copying it.

    __call__(face): (N, 3, H, W) float [0, 1] -> (N, 3, H, W) float, clamped to [0, 1] as every
    exported or displayed output is.
    """

    def __init__(self, path: str):
        self.path = resolve_checkpoint(path)
        self.net, self.cfg = load_checkpoint(self.path)
        self.net.requires_grad_(False).eval()
        self.memory_format = torch.contiguous_format

    def __deepcopy__(self, memo) -> FrozenTeacher:
        return self

    @torch.no_grad()
    def __call__(self, face: torch.Tensor) -> torch.Tensor:
        if next(self.net.parameters()).device != face.device:
            self.net.to(face.device)
        # The weights follow the batch's layout (model.channels_last): NHWC batches through NCHW
        # weights would be converted inside every convolution.
        fmt = torch.channels_last if _is_nhwc(face) else torch.contiguous_format
        if fmt != self.memory_format:
            self.net.to(memory_format=fmt)
            self.memory_format = fmt
        return self.net.eval()(face).float().clamp_(0, 1)


def _is_nhwc(x: torch.Tensor) -> bool:
    return (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    )


def paired_loss(loss, pred: torch.Tensor, cartoon: torch.Tensor, paired: torch.Tensor | None):
    """`loss(pred, cartoon)` over the faces that have a real cartoon, without a host sync.

    pred, cartoon: (N, 3, H, W) float [0, 1]; paired: (N,) bool on their device, or None (all
    paired). Returns (total, parts) as `loss` does; both are 0 for a batch with no paired face.

    Selecting rows (`pred[paired]`, or `if paired.any()`) makes the host wait for the GPU every
    step. Instead an unpaired face's prediction is swapped for its placeholder cartoon: the pair
    is then identical, so it adds 0 to every term (L1, 1 - SSIM, VGG features and Gram matrices)
    and no gradient, and since every term is a mean over equal-sized samples, N / (number paired)
    times the batch mean is the mean over the paired faces.
    """
    if paired is None:
        return loss(pred, cartoon)
    total, parts = loss(torch.where(paired.view(-1, 1, 1, 1), pred, cartoon), cartoon)
    scale = paired.numel() / paired.sum().clamp(min=1)
    return total * scale, {k: v * scale for k, v in parts.items()}


class DistillModule(ToonModule):
    """ToonModule whose targets come from a teacher (see the module docstring).

    Extra validation metrics: val/teacher_{psnr,ssim} (the teacher against the real cartoons on
    the same val pairs: the student's ceiling) and val/fidelity_psnr (student against teacher).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        distill = cfg.distill
        self.teacher = FrozenTeacher(str(distill.teacher))
        self.teacher_weight = float(distill.get("teacher_weight", 1.0))
        self.paired_weight = float(distill.get("paired_weight", 1.0))
        self.teacher_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.teacher_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.fidelity_psnr = PeakSignalNoiseRatio(data_range=1.0)

    def objective(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        face = batch["face"]
        target = self.teacher(face)
        pred = self.generator(face)
        t_total, t_parts = self.loss(pred, target)
        total = self.teacher_weight * t_total
        parts = {f"teacher_{k}": v for k, v in t_parts.items()}
        if self.paired_weight > 0:
            p_total, p_parts = paired_loss(self.loss, pred, batch["cartoon"], batch.get("paired"))
            total = total + self.paired_weight * p_total
            parts.update({f"paired_{k}": v for k, v in p_parts.items()})
        return pred, total, parts

    def validation_extra(self, batch: dict, pred: torch.Tensor) -> None:
        n = batch["face"].shape[0]
        teacher = self.teacher(batch["face"]).float()
        with full_precision(self.device):  # as validation_step
            self.teacher_psnr(teacher, batch["cartoon"].float())
            self.teacher_ssim(teacher, batch["cartoon"].float())
            self.fidelity_psnr(pred, teacher)
        self.log("val/teacher_psnr", self.teacher_psnr, batch_size=n)
        self.log("val/teacher_ssim", self.teacher_ssim, batch_size=n)
        self.log("val/fidelity_psnr", self.fidelity_psnr, batch_size=n)

    @torch.no_grad()
    def grid_columns(self, batch: dict) -> list[tuple[str, torch.Tensor]]:
        return [
            ("face", batch["face"]),
            ("teacher", self.teacher(batch["face"])),
            ("student", self(batch["face"])),
            ("target", batch["cartoon"]),
        ]
