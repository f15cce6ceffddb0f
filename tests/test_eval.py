"""`toonclip eval`: per-pair PSNR/SSIM/L1 of a model and of the identity baseline, on tiny runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from toonclip.cli import main
from toonclip.evaluation import PSNR_CAP_DB, evaluate, score
from toonclip.evaluation.metrics import checker_energy, to_tensor
from toonclip.inference import load_checkpoint

SIZE = 32  # tiny_run's data.size; its 64 px synthetic pairs are area-resized to it


def decode(path: Path, size: int = SIZE) -> np.ndarray:
    """Independent of toonclip.data: PIL decode, then OpenCV's area filter (images are square)."""
    return cv2.resize(np.asarray(Image.open(path).convert("RGB")), (size, size),
                      interpolation=cv2.INTER_AREA)  # fmt: skip


def load_split(root: Path, stems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    faces = np.stack([decode(root / "ffhq" / f"{s}.jpg") for s in stems])
    cartoons = np.stack([decode(root / "comics_heroes" / f"{s}.png") for s in stems])
    return faces, cartoons


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def all_pairs(tiny_run, tmp_path_factory) -> Path:
    """`toonclip eval` of tiny_run on all 12 synthetic pairs (out= keeps tiny_run untouched)."""
    out = tmp_path_factory.mktemp("eval_all")
    assert main(["eval", f"ckpt={tiny_run}", "split=all", f"out={out}", "n=3"]) == 0
    return out


@pytest.fixture
def fake_run(tiny_run, tmp_path) -> Path:
    """A run folder of our own (tiny_run's checkpoint linked, its config and val split copied)."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").symlink_to(tiny_run / "checkpoints" / "best.ckpt")
    for name in ("config.yaml", "val_files.txt"):
        shutil.copy(tiny_run / name, run_dir / name)
    return run_dir


def test_eval_on_the_run_val_split_writes_table_json_and_grid(fake_run, capsys):
    code, out, _ = run(capsys, f"ckpt={fake_run}", "n=2")
    assert code == 0
    folder = fake_run / "eval" / f"val_{SIZE}px"  # the default out for a run
    stems = (fake_run / "val_files.txt").read_text().split()
    rows = read_csv(folder / "eval.csv")
    assert [r["stem"] for r in rows] == [*stems, "mean"]
    data = json.loads((folder / "eval.json").read_text())
    assert data["split"] == "val" and data["size"] == SIZE and data["n_pairs"] == len(stems)
    assert data["model"] == str(fake_run / "checkpoints" / "best.ckpt")
    assert data["gain_psnr"] == pytest.approx(data["psnr"] - data["identity_psnr"])
    assert data["gain_ssim"] == pytest.approx(data["ssim"] - data["identity_ssim"])
    for key in ("psnr", "ssim", "l1", "identity_psnr", "identity_ssim", "identity_l1"):
        assert float(rows[-1][key]) == pytest.approx(data[key])
    md = (folder / "eval.md").read_text()
    headline = f"model {data['psnr']:.2f} dB / {data['ssim']:.3f} SSIM vs identity"
    assert headline in md and headline in out and str(folder) in out
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + len(stems) + 1
    grid = Image.open(folder / "grid.png")
    n_rows = min(2, len(stems))
    assert grid.size[0] == 3 * 144 + 4 * 2  # face | prediction | target at the 144 px tile
    assert grid.size[1] > n_rows * 144 + (n_rows + 1) * 2  # plus the header band


def test_train_split_scores_the_other_pairs_as_all_does(fake_run, all_pairs, capsys):
    code, _, _ = run(capsys, f"ckpt={fake_run}", "split=train", "n=0")
    assert code == 0
    held_out = set((fake_run / "val_files.txt").read_text().split())
    rows = read_csv(fake_run / "eval" / f"train_{SIZE}px" / "eval.csv")[:-1]
    every = {r["stem"]: r for r in read_csv(all_pairs / "eval.csv")[:-1]}
    assert held_out and {r["stem"] for r in rows} == set(every) - held_out
    for row in rows:
        for key in ("psnr", "identity_psnr", "ssim"):
            assert float(row[key]) == pytest.approx(float(every[row["stem"]][key]), abs=1e-4)


def test_an_undecodable_face_fails_in_one_line_and_skip_bad_scores_the_rest(
    fake_run, synthetic_root, tmp_path, capsys
):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    broken = sorted((root / "ffhq").iterdir())[0]
    broken.write_bytes(b"not an image")
    args = (f"ckpt={fake_run}", f"data.root={root}", "split=all", "n=0", f"out={tmp_path / 'o'}")
    code, _, err = run(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert broken.name in err and "data.skip_bad=true" in err
    assert not (tmp_path / "o").exists()
    # The advice the error gives is an option eval takes.
    assert run(capsys, *args, "data.skip_bad=true")[0] == 0
    data = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert data["n_pairs"] == len(list((root / "ffhq").iterdir())) - 1


def test_identity_and_model_figures_match_an_independent_computation(all_pairs, tiny_run):
    rows = read_csv(all_pairs / "eval.csv")[:-1]
    assert len(rows) == 12
    faces, cartoons = load_split(Path(json.loads((all_pairs / "eval.json").read_text())
                                      ["data_root"]), [r["stem"] for r in rows])  # fmt: skip
    generator = load_checkpoint(tiny_run / "checkpoints" / "best.ckpt")[0]
    for row, face, cartoon in zip(rows, to_tensor(faces), to_tensor(cartoons), strict=True):
        x, t = face[None], cartoon[None]
        with torch.inference_mode():
            pred = generator(x).clamp(0, 1)
        for prefix, image, tol in (("identity_", x, 1e-5), ("", pred, 1e-4)):
            expected = {
                "psnr": float(peak_signal_noise_ratio(image, t, data_range=1.0)),
                "ssim": float(
                    structural_similarity_index_measure(image.double(), t.double(), data_range=1.0)
                ),
                "l1": float((image - t).abs().mean()),
            }
            for key, value in expected.items():
                assert float(row[prefix + key]) == pytest.approx(value, rel=tol), (prefix, key)
    data = json.loads((all_pairs / "eval.json").read_text())
    assert data["identity_psnr"] == pytest.approx(
        np.mean([float(r["identity_psnr"]) for r in rows])
    )
    assert 15 < data["identity_psnr"] < 40  # posterised synthetic faces: close, not equal


def test_doing_nothing_scores_the_identity_and_a_perfect_model_the_cap(synthetic_root):
    stems = [f"face_{i:03d}" for i in range(5)]
    faces, cartoons = load_split(synthetic_root, stems)
    rows, means = evaluate(lambda x: x, faces, cartoons, stems, batch=2)
    assert [r["stem"] for r in rows] == stems and means["n_pairs"] == 5
    for r in rows:
        assert (r["psnr"], r["ssim"], r["l1"]) == (
            r["identity_psnr"], r["identity_ssim"], r["identity_l1"],
        )  # fmt: skip
    assert means["gain_psnr"] == 0 and means["gain_ssim"] == 0
    targets = iter(to_tensor(cartoons).split(2))
    rows, means = evaluate(lambda x: next(targets), faces, cartoons, stems, batch=2)
    assert means["psnr"] == PSNR_CAP_DB and means["l1"] == 0  # MSE 0: inf dB, capped
    assert means["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert means["gain_psnr"] == pytest.approx(PSNR_CAP_DB - means["identity_psnr"])
    # Overshoot is clamped before scoring: +0.5 everywhere scores as the clamped image.
    t = to_tensor(cartoons[:2])
    assert score(t + 0.5, t) == score((t + 0.5).clamp(0, 1), t)
    assert score(t[0], t[0])["psnr"] == [PSNR_CAP_DB]  # a single (3, H, W) image


def test_checker_energy_reads_pixel_noise_not_outlines():
    flat = torch.full((3, 16, 16), 0.5)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((yy + xx) % 2).float() * 0.2 - 0.1  # a +-0.1 checker, period 2 px
    edges = flat.clone()
    edges[:, 8:] = 1.0  # a horizontal outline
    edges[:, :, 4] = 0.0  # and a vertical one, 1 px wide
    got = checker_energy(torch.stack([flat, flat + checker, edges]))
    assert got[0] == 0 and got[1] == pytest.approx(0.1)
    assert got[2] < 0.01  # only the two crossings respond: 4 of 225 positions
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert checker_energy(noise)[0] > 0.1  # uniform noise: mean |sum of 4| / 4 ~ 0.14


@pytest.fixture
def onnx_affine(tmp_path) -> Path:
    """A fixed 32 px ONNX model computing 0.5 x + 0.25, written by toonclip's exporter."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name, reason=f"ONNX export/eval needs {name} (extra 'export')")
    from toonclip.export.onnx import export_onnx

    class Affine(torch.nn.Module):
        def forward(self, x):
            return x * 0.5 + 0.25

    return export_onnx(Affine(), tmp_path / "affine.onnx", size=SIZE)


def test_onnx_model_inside_and_outside_a_run(onnx_affine, fake_run, synthetic_root, capsys):
    # Inside RUN/export/: the run's config gives the data, val_files.txt the default split.
    inside = fake_run / "export" / "affine.onnx"
    inside.parent.mkdir()
    shutil.copy(onnx_affine, inside)
    assert run(capsys, f"ckpt={inside}")[0] == 0
    data = json.loads((inside.parent / "eval_affine" / f"val_{SIZE}px" / "eval.json").read_text())
    stems = (fake_run / "val_files.txt").read_text().split()
    faces, cartoons = load_split(synthetic_root, stems)
    _, expected = evaluate(lambda x: x * 0.5 + 0.25, faces, cartoons, stems)
    assert data["split"] == "val" and data["n_pairs"] == len(stems)
    for key in ("psnr", "ssim", "l1", "identity_psnr", "gain_psnr"):
        assert data[key] == pytest.approx(expected[key], rel=1e-4), key

    # Outside any run: data.root is required, and every pair is scored.
    code, _, err = run(capsys, f"ckpt={onnx_affine}")
    assert code == 2 and "pass data.root=DIR" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, f"ckpt={onnx_affine}", f"data.root={synthetic_root}", "size=64")
    assert code == 2 and "affine.onnx only takes 32 px" in err
    assert run(capsys, f"ckpt={onnx_affine}", f"data.root={synthetic_root}", "n=0")[0] == 0
    folder = onnx_affine.parent / "eval_affine" / f"all_{SIZE}px"
    assert json.loads((folder / "eval.json").read_text())["n_pairs"] == 12
    assert not (folder / "grid.png").exists()  # n=0: no grid


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ckpt={tmp}/nope"], "ckpt={tmp}/nope does not exist"),
        (["ckpt={run}", "split=test"], "split=test: use split=val"),
        (["ckpt={run}", "size=48"], "size=48: must be a multiple of 32"),
        (["ckpt={run}", "n=x"], "n=x: use a whole number >= 0"),
        (["ckpt={run}", "colour=red"], "toonclip eval has no option 'colour'"),
        (["ckpt={run}", "device=cuda:0"], "device=cuda:0"),
        (["ckpt={run}", "data.root={tmp}/nowhere"], "data.root={tmp}/nowhere does not exist"),
        (["ckpt={run}", "val=ghost_007"], "ghost_007"),
        ([], "eval needs ckpt="),
    ],
)
def test_bad_input_gives_one_clear_line(fake_run, tmp_path, capsys, args, expected):
    if "val=ghost_007" in args:  # a val stem the data folder does not hold
        args = ["ckpt={run}"]
        with open(fake_run / "val_files.txt", "a") as f:
            f.write("ghost_007\n")
    if "device=cuda:0" in args and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: device=cuda:0 is valid here")
    fill = {"run": fake_run, "tmp": tmp_path}
    code, _, err = run(capsys, *[a.format(**fill) for a in args])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(**fill) in lines[0]
    assert not (fake_run / "eval").exists()  # nothing written on error
