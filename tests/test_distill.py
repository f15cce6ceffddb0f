"""Distillation (issue 11): students by name, unpaired faces, the teacher's targets, the
shift-consistency term, and `compare latency=onnx`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import HostReads, cli, one_error
from PIL import Image

from toonclip.errors import ConfigError


def _distill_overrides(root, run_dir, teacher, *extra) -> list[str]:
    return [
        "distill=default",
        "model=student",
        f"distill.teacher={teacher}",
        f"data.root={root}",
        "data.size=32",
        "data.batch_size=2",
        f"run_dir={run_dir}",
        "model.weights=none",
        "trainer.max_steps=3",
        "trainer.val_every_n_steps=3",
        "trainer.checkpoint_every_n_steps=3",
        "trainer.num_sanity_val_steps=0",
        "grid.n_samples=2",
        "grid.tile=32",
        *extra,
    ]


@pytest.fixture(scope="module")
def extra_faces(tmp_path_factory, synthetic_root):
    """Unpaired faces: three new ones, plus a copy of every paired face under its own name (the
    val ones among them must be left out)."""
    folder = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(1)
    for i in range(3):
        img = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"new_{i}.png")
    for path in (synthetic_root / "ffhq").iterdir():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, synthetic_root, tiny_run, extra_faces):
    from toonclip.training.run import prepare, teacher_defaults, train

    run_dir = tmp_path_factory.mktemp("distill") / "student"
    overrides = teacher_defaults(
        _distill_overrides(
            synthetic_root,
            run_dir,
            tiny_run,
            f"data.extra_faces={extra_faces}",
            "temporal.weight=1",
        )
    )
    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


def test_decoder_width_scales_smp_channels():
    from toonclip.models import build_generator, count_parameters
    from toonclip.models.options import decoder_kwargs

    assert decoder_kwargs("unet", 1.0) == {}
    assert decoder_kwargs("unet", 0.25) == {"decoder_channels": (64, 32, 16, 8, 4)}
    assert decoder_kwargs("fpn", 0.5) == {
        "decoder_pyramid_channels": 128,
        "decoder_segmentation_channels": 64,
    }
    with pytest.raises(ConfigError, match="model.arch=linknet has no decoder width"):
        decoder_kwargs("linknet", 0.5)
    with pytest.raises(ConfigError, match=r"model.decoder_width=0: use a multiplier"):
        decoder_kwargs("unet", 0)
    full = build_generator("unet", "mobilenetv3_small_050", weights="none")
    slim = build_generator("unet", "mobilenetv3_small_050", weights="none", decoder_width=0.25)
    assert count_parameters(slim) < count_parameters(full) / 2
    assert slim(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("encoder", ["lcnet_050", "tf_mobilenetv3_small_minimal_100"])
def test_small_encoders_build_through_the_factory(encoder):
    from toonclip.models import build_generator

    net = build_generator("unet", encoder, weights="none", decoder_width=0.25, residual=True)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(net.eval()(x), x)  # residual: an untrained student is the identity


def test_distill_command_line_maps_to_train_overrides():
    from toonclip.distill.cli import distill_overrides

    out = distill_overrides(["teacher=runs/t", "student.encoder=lcnet_050", "+student.x=1", "a=b"])
    assert out == [
        "distill=default",
        "model=student",
        "distill.teacher=runs/t",
        "model.encoder=lcnet_050",
        "+model.x=1",
        "a=b",
    ]
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        distill_overrides(["oops"])


def test_unpaired_faces_join_training_but_never_validation(synthetic_root, extra_faces):
    from toonclip.data.datamodule import PairDataModule

    dm = PairDataModule(str(synthetic_root), size=32, batch_size=4, extra_faces=str(extra_faces))
    dm.setup("fit")
    assert dm.n_extra == 3 + len(dm.train_pairs)  # every val face's copy was left out
    flags = [dm.train_set[i]["paired"] for i in range(len(dm.train_set))]
    assert flags.count(True) == len(dm.train_pairs) and flags.count(False) == dm.n_extra
    batch = next(iter(dm.train_dataloader()))
    assert batch["paired"].dtype == torch.bool and batch["paired"].shape == (4,)
    assert "paired" not in next(iter(dm.val_dataloader()))


def test_student_learns_teacher_and_saves_only_itself(student_run, tiny_run):
    from toonclip.inference import load_checkpoint

    summary = json.loads((student_run / "summary.json").read_text())
    assert summary["status"] == "finished", summary.get("error")
    teacher = summary["teacher"]
    assert teacher["psnr"] > 0
    assert teacher["drop_psnr"] == pytest.approx(teacher["psnr"] - summary["final"]["val/psnr"])
    header = (student_run / "metrics.csv").read_text().splitlines()[0]
    for part in (
        "train/teacher_pixel",
        "train/paired_pixel",
        "train/temporal",
        "val/fidelity_psnr",
    ):
        assert part in header
    ckpt = torch.load(student_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [k for k in ckpt["state_dict"] if not k.startswith(("generator.", "loss."))]
    assert "optimizer_states" in ckpt
    n_params = sum(
        p.numel()
        for p in load_checkpoint(student_run / "checkpoints" / "last.ckpt")[0].parameters()
    )
    teacher_net, _ = load_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    assert n_params < sum(p.numel() for p in teacher_net.parameters()) / 4
    # face | teacher | student | target: four tiles of 32 px per row
    grid = Image.open(student_run / "grids" / "latest.png")
    assert grid.width >= 4 * 32 and grid.width < 5 * 32 + 20


def test_teacher_stays_frozen(synthetic_root, tiny_run):
    from omegaconf import OmegaConf

    from toonclip.config import compose
    from toonclip.distill.module import DistillModule

    cfg = compose(_distill_overrides(synthetic_root, "/tmp/unused", tiny_run))
    module = DistillModule(cfg)
    before = [p.clone() for p in module.teacher.net.parameters()]
    batch = {
        "face": torch.rand(2, 3, 32, 32),
        "cartoon": torch.rand(2, 3, 32, 32),
        "paired": torch.tensor([False, False]),
    }
    pred, total, parts = module.objective(batch)
    total.backward()
    # No paired face: the paired parts are there (the same keys every step) and are 0.
    assert set(parts) == {"teacher_pixel", "teacher_dssim", "paired_pixel", "paired_dssim"}
    assert parts["paired_pixel"] == 0 and parts["paired_dssim"] == 0
    assert all(p.grad is None for p in module.teacher.net.parameters())
    assert all(
        torch.equal(a, b) for a, b in zip(before, module.teacher.net.parameters(), strict=True)
    )
    assert not [n for n, _ in module.named_parameters() if n.startswith("teacher")]
    assert OmegaConf.select(cfg, "model.decoder_width") == 0.25


def test_teacher_weights_follow_the_batch_layout(tiny_checkpoint):
    from toonclip.distill.module import FrozenTeacher

    teacher = FrozenTeacher(str(tiny_checkpoint))
    face = torch.rand(2, 3, 32, 32)
    nchw = teacher(face)
    nhwc = teacher(face.contiguous(memory_format=torch.channels_last))
    spatial = [m.weight for m in teacher.net.modules() if isinstance(m, torch.nn.Conv2d)]
    spatial = [w for w in spatial if w.shape[1] > 1 and w.shape[-1] > 1]
    assert spatial and all(w.is_contiguous(memory_format=torch.channels_last) for w in spatial)
    torch.testing.assert_close(nhwc, nchw, atol=1e-5, rtol=0)  # the layout changes no result
    teacher(face)  # and back for an NCHW batch
    assert all(w.is_contiguous() for w in spatial)


def test_shift_consistency_is_zero_only_for_a_shift_equivariant_generator():
    from toonclip.losses.temporal import shift_consistency

    torch.manual_seed(0)
    face = torch.rand(2, 3, 32, 32)
    identity = torch.nn.Identity()
    assert shift_consistency(identity, face, identity(face), 3.0) < 1e-6
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32)

    def pinned(x):  # draws a fixed gradient on the frame, wherever the face is
        return x + ramp

    assert shift_consistency(pinned, face, pinned(face), 3.0) > 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["distill=default"], "distill needs a teacher: add teacher="),
        (["distill=default", "distill.teacher=/nope"], "teacher=/nope does not exist"),
        (["data.extra_faces=/tmp"], "data.extra_faces=/tmp: unpaired faces have no target"),
        (["model.arch=linknet", "model.decoder_width=0.5"], "model.arch=linknet has no decoder"),
        (["temporal.weight=-1"], "temporal.weight=-1: use a number >= 0"),
    ],
)
def test_bad_distill_options_are_refused_before_a_run_folder(
    tmp_path, synthetic_root, args, message
):
    from toonclip.training.run import prepare

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        prepare([f"data.root={synthetic_root}", f"run_dir={tmp_path / 'r'}", *args])
    assert not (tmp_path / "r").exists()


def test_distill_command_errors_are_one_line(capsys, tmp_path):
    code, _, err = cli(capsys, "distill", "teacher=/nope", f"run_dir={tmp_path / 'r'}")
    assert code == 2
    assert "teacher=/nope does not exist" in one_error(err)


def test_distill_takes_data_from_the_teacher(tiny_run, tmp_path):
    from toonclip.training.run import teacher_defaults

    out = teacher_defaults(["distill=default", f"distill.teacher={tiny_run}", "data.size=64"])
    assert any(o.startswith("data.root=") for o in out)
    assert "data.size=32" not in out and out[-1] == "data.size=64"


def test_compare_onnx_latency_columns_for_a_student(student_run, tmp_path):
    """ONNX fp32/int8 figures and the gap to the teacher in the table (the teacher itself, a
    UNet++ export and int8 calibration of ~1 minute here, is compared in notebook 05 in CI)."""
    from toonclip.compare.cli import compare

    index = compare([str(student_run)], out=tmp_path / "cmp", latency="onnx", latency_runs=1)
    header, values = (index.parent / "metrics.csv").read_text().splitlines()[:2]
    row = dict(zip(header.split(","), values.split(","), strict=True))
    for key in ("onnx_fp32_ms", "onnx_int8_ms", "onnx_int8_fps", "teacher_psnr"):
        assert float(row[key]) > 0, key
    assert 0 < float(row["onnx_int8_mb"]) < float(row["onnx_fp32_mb"])
    summary = json.loads((student_run / "summary.json").read_text())
    assert float(row["vs_teacher_psnr"]) == pytest.approx(-summary["teacher"]["drop_psnr"])
    assert "ORT int8" in (index.parent / "metrics.md").read_text()
    assert (index.parent / "pareto.png").is_file()


def test_compare_without_onnx_keeps_its_columns(tiny_run, tmp_path):
    from toonclip.compare.cli import compare

    index = compare([str(tiny_run)], out=tmp_path / "cmp", latency_runs=0)
    header = (index.parent / "metrics.csv").read_text().splitlines()[0]
    assert "onnx_fp32_ms" not in header and "vs_teacher_psnr" not in header
    with pytest.raises(ConfigError, match="latency=gpu: use latency=torch"):
        compare([str(tiny_run)], out=tmp_path / "cmp2", latency="gpu")


def test_paired_loss_is_the_loss_over_paired_faces_without_host_reads():
    from toonclip.distill.module import paired_loss
    from toonclip.losses.perceptual import PerceptualStyleLoss

    loss = PerceptualStyleLoss(
        {"relu1_2": 1.0},
        perceptual_weight=1.0,
        style_weight=1.0,
        pixel_weight=1.0,
        ssim_weight=1.0,
        vgg_weights="none",
    )
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 3, 24, 24, generator=g).requires_grad_(True)
    cartoon = torch.rand(4, 3, 24, 24, generator=g)
    paired = torch.tensor([True, False, True, False])

    with HostReads() as reads:
        total, parts = paired_loss(loss, pred, cartoon, paired)
    assert reads.stacks == []
    (grad,) = torch.autograd.grad(total, pred)

    sub = pred.detach()[paired].requires_grad_(True)
    want, want_parts = loss(sub, cartoon[paired])
    (want_grad,) = torch.autograd.grad(want, sub)
    assert torch.allclose(total, want, rtol=1e-5)
    assert set(parts) == set(want_parts) == {"perceptual", "style", "pixel", "dssim"}
    for k in parts:
        assert torch.allclose(parts[k], want_parts[k], rtol=1e-5), k
    assert torch.allclose(grad[paired], want_grad, rtol=1e-4, atol=1e-9)
    assert not grad[~paired].any()  # unpaired faces: no gradient at all

    none_paired = torch.zeros(4, dtype=torch.bool)
    total, _ = paired_loss(loss, pred, cartoon, none_paired)
    assert total.item() == 0.0
    assert torch.allclose(paired_loss(loss, pred, cartoon, None)[0], loss(pred, cartoon)[0])
