"""The LightningModule: generator + loss (+ optional discriminator), metrics, optimisers."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from toonclip.data.device_augment import BatchPairAugment
from toonclip.errors import ToonclipError
from toonclip.losses.adversarial import PatchDiscriminator
from toonclip.losses.temporal import shift_consistency
from toonclip.models import generator_from_config
from toonclip.precision import full_precision
from toonclip.training import adversarial as A


class NonFiniteLossError(ToonclipError):
    """The loss became NaN or infinite."""


class ToonModule(L.LightningModule):
    """Trains `generator` (face -> cartoon) with the configured loss.

    Batches hold "face" and "cartoon" as (N, 3, H, W) uint8; they are converted to float [0, 1]
    on the device (see on_after_batch_transfer). The whole resolved config is saved in the
    checkpoint's hyper_parameters["cfg"], which is how `toonclip.inference` rebuilds the network.

    With `adversarial.weight > 0` it also holds `discriminator` (losses/adversarial.py) and trains
    both by manual optimisation (training/adversarial.py); the checkpoint then carries the
    discriminator and both optimiser states for a resume, and inference reads only `generator.`.
    """

    def __init__(self, cfg: DictConfig | dict):
        super().__init__()
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.cfg = cfg
        self.generator = generator_from_config(cfg.model)
        self.loss = instantiate(cfg.loss)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        # The identity baseline: the face itself as the prediction, scored by the same metric
        # definitions on the same batches, so summary.json can say what training gained over it.
        self.identity_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.identity_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self._channels_last = bool(cfg.model.get("channels_last", False))
        self.finite_check_every: int | None = None  # None: every step (on_fit_start sets it)
        augment = cfg.data.get("augment") or {}
        self.device_augment = (
            BatchPairAugment(cfg.data.size, augment) if augment.get("device") == "gpu" else None
        )
        temporal = cfg.get("temporal") or {}
        self.temporal_weight = float(temporal.get("weight", 0.0))
        self.temporal_shift = float(temporal.get("max_shift", 4.0))
        adv = cfg.get("adversarial") or {}
        self.adv_weight = float(adv.get("weight", 0.0) or 0.0)
        self.discriminator = None  # weight 0: nothing is built, automatic optimisation as ever
        if self.adv_weight > 0:
            self.discriminator = PatchDiscriminator(
                6,
                int(adv.get("ndf", 32)),
                int(adv.get("n_layers", 3)),
                int(adv.get("downsample", 1)),
            )
            self.adv_loss = str(adv.get("loss", "lsgan"))
            self.adv_start_step = int(adv.get("start_step", 0))
            # Two optimisers: stepped by hand (training/adversarial.py), clipping included.
            self.automatic_optimization = False
            self.clip_value = float(cfg.trainer.get("gradient_clip_val") or 0.0)
            self.clip_algorithm = cfg.trainer.get("gradient_clip_algorithm")

    def configure_model(self) -> None:
        if self._channels_last:
            self.generator.to(memory_format=torch.channels_last)
        if self.cfg.model.get("compile", False) and not isinstance(
            self.generator, torch._dynamo.eval_frame.OptimizedModule
        ):
            self.generator = torch.compile(self.generator)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format
        for key in ("face", "cartoon"):
            batch[key] = batch[key].float().div_(255)
        if self.device_augment is not None and self._trainer is not None and self.trainer.training:
            batch["face"], batch["cartoon"] = self.device_augment(batch["face"], batch["cartoon"])
        for key in ("face", "cartoon"):
            batch[key] = batch[key].contiguous(memory_format=fmt)
        return batch

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        """face (N, 3, H, W) float [0, 1] -> cartoon (N, 3, H, W), unclamped."""
        return self.generator(face)

    def _log_parts(self, stage: str, total: torch.Tensor, parts: dict, batch_size: int) -> None:
        # Validation values are epoch means: under DDP they are averaged over the ranks
        # (sync_dist), so every rank, the checkpoint monitor and metrics.csv see the same number.
        # Train values are per step and stay per rank (no collective on every step), and stay
        # off the progress bar, which would read them on the host after every step (a GPU sync;
        # trainer.LoggedStepProgressBar shows train/loss as of the last logging step).
        on_step = stage == "train"
        kwargs = {"on_step": on_step, "on_epoch": not on_step, "batch_size": batch_size}
        self.log(
            f"{stage}/loss", total.detach(), prog_bar=not on_step, sync_dist=not on_step, **kwargs
        )
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, sync_dist=not on_step, **kwargs)

    def objective(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(prediction, total loss, named parts) of one training batch; the distillation module
        replaces the targets, the temporal term is added for both."""
        pred = self.generator(batch["face"])
        total, parts = self.loss(pred, batch["cartoon"])
        return pred, total, parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred, total, parts = self.objective(batch)
        if self.temporal_weight > 0:
            term = shift_consistency(self.generator, batch["face"], pred, self.temporal_shift)
            total = total + self.temporal_weight * term
            parts = {**parts, "temporal": term.detach()}
        checking = self._should_check_finite()

        def check(loss: torch.Tensor, name: str) -> None:
            if checking and not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"{name} became {loss.item()} at step {self.global_step}; "
                    "lower optim.optimizer.lr, try trainer.precision=32-true, or check the data"
                )

        if self.discriminator is not None:
            total, parts = A.adversarial_step(self, batch, pred, total, parts, check)
        else:
            check(total, "loss")
        self._log_parts("train", total, parts, batch["face"].shape[0])
        return total

    def _should_check_finite(self) -> bool:
        # The check reads the loss on the host. On a GPU that is a sync in the middle of the step
        # (about 10% of throughput at 256 px), so there it runs only on the steps whose metrics
        # Lightning logs, and so reads on the host anyway (finite_check_every, set at fit start).
        every = self.finite_check_every
        return every is None or (self.global_step + 1) % every == 0

    def on_fit_start(self) -> None:
        # Every step on the CPU, where reading a value costs nothing and a 2-step run is checked.
        on_cpu = self.device.type == "cpu"
        self.finite_check_every = 1 if on_cpu else max(1, int(self.trainer.log_every_n_steps))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Logs val/{loss, parts, psnr, ssim, l1} and val/identity_{psnr, ssim, l1}.

        PSNR/SSIM are torchmetrics objects over the whole val set (data_range 1, images float in
        [0, 1]; they reduce across DDP ranks themselves); L1 is the mean absolute error in [0, 1].
        """
        pred = self.generator(batch["face"])
        total, parts = self.loss(pred, batch["cartoon"])
        n = batch["face"].shape[0]
        self._log_parts("val", total, parts, n)
        pred = pred.float().clamp(0, 1)
        target, face = batch["cartoon"].float(), batch["face"].float()
        # In float32 under bf16/16-mixed too: autocast runs torchmetrics' SSIM convolutions in
        # half precision, where the identity SSIM of 16 faces read -0.11 instead of 0.53.
        with full_precision(self.device):
            self.val_psnr(pred, target)
            self.val_ssim(pred, target)
            self.identity_psnr(face, target)
            self.identity_ssim(face, target)
        l1 = torch.nn.functional.l1_loss
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, batch_size=n)
        self.log("val/l1", l1(pred, target), batch_size=n, sync_dist=True)
        self.log("val/identity_psnr", self.identity_psnr, batch_size=n)
        self.log("val/identity_ssim", self.identity_ssim, batch_size=n)
        self.log("val/identity_l1", l1(face, target), batch_size=n, sync_dist=True)
        self.validation_extra(batch, pred)

    def validation_extra(self, batch: dict, pred: torch.Tensor) -> None:
        """More validation metrics of a subclass; pred: the clamped (N, 3, H, W) prediction."""

    @torch.no_grad()
    def grid_columns(self, batch: dict) -> list[tuple[str, torch.Tensor]]:
        """Columns of the validation grid, (header, (N, 3, H, W) float) each, left to right."""
        return [
            ("face", batch["face"]),
            ("prediction", self(batch["face"])),
            ("target", batch["cartoon"]),
        ]

    def configure_optimizers(self):
        """The generator's optimiser (+ scheduler); with the adversarial term, the
        discriminator's Adam second (training/adversarial.py steps both)."""
        optimizer = instantiate(self.cfg.optim.optimizer)(self.generator.parameters())
        config = {"optimizer": optimizer}
        if self.cfg.optim.get("scheduler"):
            scheduler = instantiate(self.cfg.optim.scheduler)(
                optimizer, total_steps=self.trainer.estimated_stepping_batches
            )
            config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        if self.discriminator is not None:
            d_optimizer = A.discriminator_optimizer(self.discriminator, self.cfg.adversarial)
            return [config, {"optimizer": d_optimizer}]
        return config if "lr_scheduler" in config else optimizer

    def on_before_optimizer_step(self, optimizer) -> None:
        if not self.automatic_optimization:
            A.clip_generator(self, optimizer)
