"""BatchNorm recalibration before validation; the model summary and console notes of a fit."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from torch import nn

from toonclip.models.cost import count_gflops
from toonclip.training.callbacks import GeneratorSummary, recalibrate_batchnorm


class Stub(nn.Module):
    """The parts of ToonModule that recalibration uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.device = torch.device("cpu")

    def on_after_batch_transfer(self, batch, idx):
        return {k: v.float() / 255 for k, v in batch.items()}

    def forward(self, x):
        return self.generator(x)


def test_running_stats_become_the_mean_over_the_batches():
    stub = Stub().eval()
    bn = stub.generator[1]
    bn.running_mean.fill_(100.0)  # stale statistics, as after fast-moving training
    g = torch.Generator().manual_seed(1)
    batches = [
        {"face": torch.randint(0, 255, (2, 3, 8, 8), generator=g, dtype=torch.uint8)}
        for _ in range(3)
    ]
    recalibrate_batchnorm(stub, batches, batches=2)  # the third batch is not used
    with torch.no_grad():
        feats = torch.cat([stub.generator[0](b["face"].float() / 255) for b in batches[:2]])
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and not bn.training  # restored


class Tiny(L.LightningModule):
    """A module with a `generator`, as ToonModule and DistillModule have, and a loss row."""

    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 1))
        self.loss = nn.L1Loss()

    def training_step(self, batch, idx):
        return self.loss(self.generator(batch[0]), batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_model_summary_prints_the_generators_flops_not_zero(tmp_path, monkeypatch):
    printed = {}

    def record(data, *args, total_flops, **kwargs):
        printed.update(dict(data), total=total_flops)

    monkeypatch.setattr(GeneratorSummary, "summarize", staticmethod(record))
    data = torch.utils.data.TensorDataset(torch.rand(2, 3, 16, 16))
    trainer = L.Trainer(
        max_steps=1,
        callbacks=[GeneratorSummary(32)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=2))
    expected = 2 * 32 * 32 * (8 * 3 * 9 + 3 * 8)  # FLOPs = 2 x MACs at the summary's 32 px
    assert printed["total"] == expected == round(count_gflops(Tiny().generator, 32) * 1e9)
    assert printed["Name"] == ["generator", "loss"]
    assert printed["FLOPs"] == [get_human_readable_count(expected), "-"]


def test_lightning_notes_are_dropped_and_other_messages_kept():
    from toonclip.training.trainer import _LightningNotes

    def kept(message: str) -> bool:
        return _LightningNotes().filter(logging.makeLogRecord({"msg": message}))

    assert not kept("💡 Tip: For seamless cloud logging, try installing [litlogger](https://...)")
    assert not kept("`weights_only` was not set, defaulting to `False`.")
    assert kept("`Trainer.fit` stopped: `max_steps=4` reached.")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert any(isinstance(f, _LightningNotes) for f in rank_zero.filters)
