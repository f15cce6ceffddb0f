"""Shared fixtures: synthetic face/cartoon pairs and tiny training runs (offline, CPU, seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

torch.set_num_threads(1)

# Tests never touch the network: weights policies that would download fall back at once.
os.environ.setdefault("TOONCLIP_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per process: the tests' tensors are tiny, and OpenMP's spin-waiting makes
# 2 threads on 2 shared cores many times slower than 1 whenever anything else is running.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from toonclip.data.synthetic import make_pairs  # noqa: E402, F401 - re-exported for tests

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "comics-heroes"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A data root with 12 synthetic 64 px pairs (read-only by convention: copy before changing)."""
    return make_pairs(tmp_path_factory.mktemp("pairs") / "data", n=12, size=64)


@pytest.fixture
def tiny_overrides():
    """Overrides for a seconds-long CPU run at 32 px; call with (data_root, run_dir)."""

    def build(root: Path, run_dir: Path, steps: int = 2) -> list[str]:
        return [
            f"data.root={root}",
            "data.size=32",
            "data.batch_size=2",
            f"run_dir={run_dir}",
            "model.weights=none",
            "loss.vgg_weights=none",
            f"trainer.max_steps={steps}",
            "trainer.val_every_n_steps=1",
            "trainer.checkpoint_every_n_steps=1",
            "trainer.num_sanity_val_steps=0",
            "grid.n_samples=2",
            "grid.tile=32",
            "loss.layer_weights={relu1_2: 1.0, relu2_2: 1.0}",
            "loss.style_layer_weights={relu1_2: 1.0, relu2_2: 1.0}",
        ]

    return build


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_root) -> Path:
    """A finished 2-step run folder (trained in-process once per test session)."""
    from toonclip.training.run import prepare, train

    run_dir = tmp_path_factory.mktemp("runs") / "unetplusplus__mobilenetv3_large_100"
    overrides = [
        f"data.root={synthetic_root}",
        "data.size=32",
        "data.batch_size=2",
        f"run_dir={run_dir}",
        "model.weights=none",
        "loss.vgg_weights=none",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=1",
        "trainer.checkpoint_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "grid.n_samples=2",
        "grid.tile=32",
    ]
    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Commands under test may set torch's thread count (bench threads=); undo it afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SMALL = ("unet", "mobilenetv3_small_050", 64)  # a small net for export/bench/stylize/demo tests


def write_checkpoint(
    path: Path, size: int = SMALL[2], seed: int = 0, arch: str = SMALL[0], encoder: str = SMALL[1]
) -> Path:
    """A random-init generator saved in the checkpoint format `toonclip train` writes."""
    from toonclip.models import build_generator

    torch.manual_seed(seed)
    gen = build_generator(arch, encoder, weights="none")
    cfg = {"model": {"arch": arch, "encoder": encoder}, "data": {"size": size}}
    state = {"generator." + k: v for k, v in gen.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"cfg": cfg}, "state_dict": state}, path)
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("small") / "checkpoints" / "best.ckpt")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "checkpoints" / "best.ckpt"


def run_cli(
    *args: str, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m toonclip.cli ARGS` in a subprocess; returns the completed process."""
    full_env = {**os.environ, "TOONCLIP_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "toonclip.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line a failing subprocess printed (asserts there is exactly one)."""
    return one_error(proc.stderr)


def cli(capsys, *args) -> tuple[int, str, str]:
    """`toonclip ARGS` in-process: (exit code, stdout, stderr).

    About 9 s cheaper per call than run_cli on a 2-core host: no new interpreter importing torch,
    Lightning and timm. run_cli stays for what needs a process of its own (signals, DDP, the
    `python -m toonclip.cli` entry point, scripts)."""
    from toonclip.cli import main

    capsys.readouterr()  # only this command's output
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stylize(capsys, model, *args) -> tuple[int, str, str]:
    """`toonclip stylize MODEL ARGS progress=false` in-process: (exit code, stdout, stderr)."""
    return cli(capsys, "stylize", model, *args, "progress=false")


def one_error(err: str) -> str:
    """The one `error:` line of a command's stderr (asserts there is exactly one, no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


class HostReads(TorchDispatchMode):
    """Records the stack of every op that makes the host wait for a device value: scalar reads
    (`aten._local_scalar_dense`, behind `.item()`, `bool()`, `float()`) and ops whose output
    size depends on the values (`nonzero`, `masked_select`, indexing with a boolean mask). The
    CPU runs them without waiting, so the tests count them there; on a GPU each one is a sync."""

    READS = (
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.masked_select.default,
    )

    def __init__(self):
        super().__init__()
        self.stacks: list[str] = []

    @staticmethod
    def _mask_index(func, args) -> bool:
        return func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.READS or self._mask_index(func, args):
            stack = traceback.format_stack(limit=16)[:-1]
            # Adam's step counters are host tensors on CUDA too (foreach, not capturable).
            if not any("in _get_value" in frame for frame in stack):
                self.stacks.append("".join(stack))
        return func(*args, **(kwargs or {}))
