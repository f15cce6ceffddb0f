"""BatchNorm recalibration before validation."""

from __future__ import annotations

import torch
from torch import nn

from toonclip.training.callbacks import recalibrate_batchnorm


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
