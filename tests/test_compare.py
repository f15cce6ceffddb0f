"""`toonclip compare`: grids, tables, Pareto plot and the page, on real tiny runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonclip.cli import main
from toonclip.compare import grids as G
from toonclip.compare.cli import compare
from toonclip.compare.plot import pareto_front
from toonclip.compare.runs import discover
from toonclip.data.io import center_square, load_rgb, resize
from toonclip.inference import Stylizer
from toonclip.visual import fit

CHROMIUM = Path("/usr/bin/chromium")
TILE, PAD = 96, 2  # PAD: make_grid's default spacing


def train_tiny(root: Path, run_dir: Path, arch: str, size: int) -> Path:
    from toonclip.training.run import prepare, train

    # As conftest's tiny_overrides, with 3 validation faces and a small encoder (fast saves).
    overrides = [
        f"data.root={root}", f"data.size={size}", "data.batch_size=2", "data.val_fraction=0.25",
        f"run_dir={run_dir}", f"model.arch={arch}", "model.encoder=mobilenet_v2",
        "model.weights=none", "loss.vgg_weights=none", "trainer.max_steps=2",
        "trainer.val_every_n_steps=1", "trainer.checkpoint_every_n_steps=2",
        "trainer.num_sanity_val_steps=0", "grid.n_samples=2", "grid.tile=32",
        "loss.layer_weights={relu1_2: 1.0, relu2_2: 1.0}",
        "loss.style_layer_weights={relu1_2: 1.0, relu2_2: 1.0}",
    ]  # fmt: skip
    cfg, run_dir, ckpt = prepare(overrides)
    return train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root, tiny_run) -> list[Path]:
    """A finished 64 px run, one that failed (NaN loss), and conftest's finished 32 px run."""
    base = tmp_path_factory.mktemp("compare_runs")
    fpn = train_tiny(synthetic_root, base / "fpn__mobilenet_v2", "fpn", 64)
    failed = base / "linknet__efficientnet-b0"
    failed.mkdir()
    summary = {"name": failed.name, "arch": "linknet", "encoder": "efficientnet-b0",
               "status": "failed", "error": "loss is NaN at step 3; lower optim.lr"}  # fmt: skip
    (failed / "summary.json").write_text(json.dumps(summary))
    return [fpn, failed, tiny_run]


@pytest.fixture(scope="module")
def compared(runs, synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare_out")
    page = compare([str(r) for r in runs], out=out, faces=synthetic_root / "ffhq", n=3,
                   tile=TILE, latency_runs=1, log=lambda m: None)  # fmt: skip
    assert page == out / "index.html"
    return out


def read_rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def tile_at(grid: np.ndarray, n_rows: int, row: int, col: int) -> np.ndarray:
    head = grid.shape[0] - n_rows * TILE - (n_rows + 1) * PAD  # header band height
    y, x = head + PAD + row * (TILE + PAD), PAD + col * (TILE + PAD)
    return grid[y : y + TILE, x : x + TILE]


def test_metrics_table(compared, runs):
    rows = read_rows(compared)
    assert [r["run"] for r in rows] == [r.name for r in runs]
    assert [r["status"] for r in rows] == ["finished", "failed", "finished"]
    for r, run in zip(rows, runs, strict=True):
        summary = json.loads((run / "summary.json").read_text())
        assert float(r["gflops_256"]) > 0 and float(r["latency_ms_256"]) > 0 and int(r["params"])
        if r["status"] == "finished":
            assert float(r["val_psnr"]) == pytest.approx(summary["best"]["val/psnr"])
            assert float(r["val_ssim"]) == pytest.approx(summary["best"]["val/ssim"])
            # GFLOPs grow about with pixels: 256 px vs the training size summary.json used
            # (not exactly: squeeze-excite and pooled branches cost the same at any size).
            scale = (256 / summary["size"]) ** 2
            assert float(r["gflops_256"]) == pytest.approx(summary["gflops"] * scale, rel=0.05)
            assert int(r["train_size"]) == summary["size"]
            # speed both ways, and the val PSNR swing, as the run's summary.json has them
            assert summary["effective_img_per_s"] > 0
            assert float(r["effective_img_per_s"]) == pytest.approx(summary["effective_img_per_s"])
            swing = (summary.get("stability") or {}).get("max_change_db")
            assert swing is not None  # both tiny runs validate at steps 1 and 2
            assert float(r["val_swing_db"]) == pytest.approx(swing)
    failed = rows[1]
    assert failed["val_psnr"] == "" and failed["error"] == "loss is NaN at step 3; lower optim.lr"
    md = (compared / "metrics.md").read_text().splitlines()
    assert md[0].startswith("| run | arch | encoder | status | params (M) | GFLOPs @256 | PSNR")
    assert sum(line.startswith("| ") for line in md) == 4
    assert "FLOPs = 2 x MACs" in (compared / "metrics.md").read_text()


def test_comparison_grid_keeps_faces_and_runs_aligned(compared, runs, synthetic_root):
    grid = np.asarray(Image.open(compared / "compare_val.png").convert("RGB"))
    n = 3  # data.val_fraction=0.25 of 12 pairs
    assert grid.shape[1] == 5 * TILE + 6 * PAD  # face | target | 3 runs
    assert grid.shape[0] > n * TILE + (n + 1) * PAD  # plus the header band
    stems = (runs[0] / "val_files.txt").read_text().split()[:n]
    # Columns 2 and 4: runs trained at 64 and 32 px; each sees the face at its own size.
    models = {
        2: (Stylizer.from_checkpoint(runs[0]), 64),
        4: (Stylizer.from_checkpoint(runs[2]), 32),
    }
    for row, stem in enumerate(stems):
        face = center_square(load_rgb(synthetic_root / "ffhq" / f"{stem}.jpg"))
        target = center_square(load_rgb(synthetic_root / "comics_heroes" / f"{stem}.png"))
        assert np.array_equal(tile_at(grid, n, row, 0), fit(face, TILE))
        assert np.array_equal(tile_at(grid, n, row, 1), fit(target, TILE))
        for col, (stylizer, size) in models.items():
            assert stylizer.size == size
            expected = fit(stylizer(np.array(resize(face, size))), TILE).astype(int)
            assert np.abs(tile_at(grid, n, row, col).astype(int) - expected).max() <= 1
        failed = tile_at(grid, n, row, 3)
        assert tuple(failed[-3, -3]) == (90, 90, 90)  # the grey "failed" tile, not a crash

    faces = np.asarray(Image.open(compared / "compare_faces.png").convert("RGB"))
    assert faces.shape[1] == 4 * TILE + 5 * PAD  # face | 3 runs, no target column


def test_pareto_strips_and_page(compared, runs):
    assert Image.open(compared / "pareto.png").size[0] > 400
    for run in (runs[0], runs[2]):
        strip = Image.open(compared / "strips" / f"{run.name}.png")
        assert strip.size[0] > strip.size[1]  # two grids (steps 1 and 2) side by side
    assert not (compared / "strips" / f"{runs[1].name}.png").exists()
    html = (compared / "index.html").read_text()
    for src in ("pareto.png", "compare_val.png", "compare_faces.png", "metrics.csv",
                f"strips/{runs[0].name}.png"):  # fmt: skip
        assert f'"{src}"' in html
    assert "loss is NaN at step 3" in html and "FLOPs = 2 x MACs" in html
    assert "http" not in html.replace("http-equiv", "")  # self-contained: no external assets


def test_pareto_front():
    # (latency, quality): b is slower and worse than a; d is dominated by c.
    points = [(100, 20.0), (150, 19.0), (200, 24.0), (300, 23.0), (50, 15.0)]
    assert pareto_front(points) == [4, 0, 2]


def test_discover_sweep_index_and_missing_member(runs, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copytree(runs[0], sweep / runs[0].name)
    index = {"members": [
        {"name": runs[0].name, "run_dir": runs[0].name, "status": "finished"},
        {"name": "unet__bad", "run_dir": "unet__bad", "status": "failed", "error": "unknown"},
    ]}  # fmt: skip
    (sweep / "sweep_index.json").write_text(json.dumps(index))
    found = discover([sweep, runs[0]])
    assert [(r.status, r.path is not None) for r in found] == [
        ("finished", True), ("failed", False), ("finished", True),
    ]  # fmt: skip
    # The same run name twice: the copy from the sweep is told apart by its parent folder.
    assert found[0].name == f"sweep/{runs[0].name}" and found[1].error == "unknown"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{missing}"], "does not exist or is not a folder"),
        (["{empty}"], "holds no runs"),
        (["{run}", "tile=abc"], "tile=abc: use a whole number >= 32"),
        (["{run}", "colour=red"], "toonclip compare has no option 'colour'"),
        (["{run}", "faces={missing}"], "is not a folder"),
        (["{run}", "peers={empty}"], "peers= needs faces=DIR"),
        (["{run}", "faces={faces}", "peers={missing}"], "is not a folder"),
        (["{run}", "faces={faces}", "peers={empty}"], "has no image named like the faces"),
    ],
)
def test_cli_errors_are_one_line(runs, tmp_path, capsys, args, expected, synthetic_root):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "run": runs[0],
             "faces": synthetic_root / "ffhq"}  # fmt: skip
    argv = ["compare", *[a.format(**paths) for a in args], f"out={tmp_path / 'out'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_peer_outputs_sit_beside_the_runs_by_file_name(tiny_run, synthetic_root, tmp_path):
    """peers=DIR: another model's outputs for the faces= images (the U2-Net visual bar). A
    missing or undecodable output is a grey tile, logged, and the page is still drawn."""
    faces = sorted(p.stem for p in (synthetic_root / "ffhq").iterdir())[:3]
    peer = tmp_path / "u2net"
    peer.mkdir()
    Image.new("RGB", (80, 60), (200, 30, 40)).save(peer / f"{faces[0]}.png")  # faces[1] missing
    (peer / f"{faces[2]}.png").write_bytes(b"not a png")  # e.g. a download cut short
    out, logged = tmp_path / "out", []
    compare([str(tiny_run)], out=out, faces=synthetic_root / "ffhq", peers=[str(peer)], n=3,
            tile=TILE, latency_runs=0, log=logged.append)  # fmt: skip
    grid = np.asarray(Image.open(out / "compare_faces.png").convert("RGB"))
    assert grid.shape[1] == 3 * TILE + 4 * PAD  # face | the run | u2net
    # The peer's image for the first face (center-cropped), grey tiles for the other two.
    assert np.abs(tile_at(grid, 3, 0, 2).astype(int) - (200, 30, 40)).max() <= 2
    assert tuple(tile_at(grid, 3, 1, 2)[-3, -3]) == (90, 90, 90)
    assert tuple(tile_at(grid, 3, 2, 2)[-3, -3]) == (90, 90, 90)
    bad = [m for m in logged if "cannot decode" in m]
    assert len(bad) == 1 and f"{faces[2]}.png" in bad[0] and "grey tile" in bad[0], logged
    assert "beside the outputs in" in (out / "index.html").read_text()
    assert f"texture x1000 at {tiny_size(tiny_run)} px" in (out / "index.html").read_text()


def test_a_peer_columns_checker_reads_only_its_outputs(tmp_path):
    """The grey tiles' text is not the peer's texture: the flat red output alone scores 0."""
    (tmp_path / "a.png").write_bytes(b"")
    Image.new("RGB", (40, 40), (200, 30, 40)).save(tmp_path / "b.png")
    head, images, real = G.peer_column(tmp_path, ["a", "b", "c"], 64, log=lambda m: None)
    assert real == [False, True, False] and len(images) == 3
    assert G.with_checker([(head, images)], 32, [real])[0][0].endswith("\nchecker 0.0")
    assert not G.with_checker([(head, images)], 32)[0][0].endswith("checker 0.0")


def test_an_undecodable_face_is_skipped_and_the_next_takes_its_place(
    tiny_run, synthetic_root, tmp_path
):
    """faces=DIR with one bad file (a download cut short): logged, skipped, the page drawn."""
    folder = tmp_path / "faces"
    folder.mkdir()
    stems = sorted(p.stem for p in (synthetic_root / "ffhq").iterdir())[:2]
    for stem in stems:
        shutil.copy(synthetic_root / "ffhq" / f"{stem}.jpg", folder)
    (folder / "0_cut.jpg").write_bytes(b"\xff\xd8\xff")  # sorts first
    out, logged = tmp_path / "out", []
    compare([str(tiny_run)], out=out, faces=folder, n=2, tile=TILE, latency_runs=0,
            log=logged.append)  # fmt: skip
    bad = [m for m in logged if "cannot decode" in m]
    assert len(bad) == 1 and "0_cut.jpg" in bad[0] and bad[0].endswith("skipped"), logged
    grid = np.asarray(Image.open(out / "compare_faces.png").convert("RGB"))
    for row, stem in enumerate(stems):  # the two good faces fill both rows, in order
        face = center_square(load_rgb(folder / f"{stem}.jpg"))
        assert np.array_equal(tile_at(grid, 2, row, 0), fit(face, TILE))
    assert f"2 images from {folder}: {', '.join(stems)}" in (out / "index.html").read_text()


def tiny_size(run: Path) -> int:
    return Stylizer.from_checkpoint(run).size


def test_a_checkpoint_file_is_drawn_beside_its_run(tiny_run, tmp_path):
    """RUN/checkpoints/last.ckpt draws the end of training, named run@last, beside best.ckpt."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["best"]["val/psnr"], summary["final"]["val/psnr"] = 21.0, 19.5
    summary["identity"] = {"val/psnr": 18.0, "val/ssim": 0.5, "val/l1": 0.1}
    (run / "summary.json").write_text(json.dumps(summary))
    runs = discover([run, run / "checkpoints" / "last.ckpt"])
    assert [r.name for r in runs] == ["run", "run@last"]
    assert [r.checkpoint.name for r in runs] == ["best.ckpt", "last.ckpt"]
    assert [r.psnr for r in runs] == [21.0, 19.5]  # the figure of the checkpoint drawn
    # Each header's gain is its own checkpoint's PSNR over identity, not the final one's.
    assert G.header(runs[0], 20).splitlines() == ["run", "PSNR 21.00 dB", "gain +3.00 dB"]
    assert G.header(runs[1], 20).splitlines() == ["run", "@last", "PSNR 19.50 dB", "gain +1.50 dB"]
    assert discover([run / "checkpoints" / "best.ckpt"])[0].name == "run"


def test_checker_lines_read_every_column_at_one_size():
    """A column at another size is resized to the measuring size; a run that did not load
    (drawn False) keeps its header: its placeholder tiles are not a model's texture."""
    yy, xx = np.mgrid[:32, :32]
    checker = np.repeat((((yy + xx) % 2) * 50 + 100)[..., None], 3, 2).astype(np.uint8)
    large = np.tile(checker, (2, 2, 1))  # 64 px: area-resized to 32 px, each 2x2 block averages out
    columns = [("run", [checker]), ("peer", [large]), ("failed", [checker])]
    got = [h for h, _ in G.with_checker(columns, 32, [True, True, False])]
    # 100/150 alternating: a +-25 checker around 125, 25/255 = 0.098.
    assert got == ["run\nchecker 98.0", "peer\nchecker 0.0", "failed"]


def test_an_interrupted_run_is_drawn_from_its_checkpoint(tiny_run, synthetic_root, tmp_path):
    """A run stopped by hand (Ctrl-C once it levelled off) keeps its best.ckpt: draw it."""
    run = tmp_path / "stopped"
    shutil.copytree(tiny_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(status="interrupted", error="stopped (KeyboardInterrupt); continue with: ...")
    summary.pop("stability", None)  # as in runs from before it: compare reads metrics.csv
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "out"
    compare([str(run)], out=out, faces=synthetic_root / "ffhq", n=1, tile=TILE, latency_runs=0,
            log=lambda m: None)  # fmt: skip
    grid = np.asarray(Image.open(out / "compare_faces.png").convert("RGB"))
    face = center_square(load_rgb(sorted((synthetic_root / "ffhq").iterdir())[0]))
    stylizer = Stylizer.from_checkpoint(run)
    expected = fit(stylizer(np.array(resize(face, stylizer.size))), TILE).astype(int)
    assert np.abs(tile_at(grid, 1, 0, 1).astype(int) - expected).max() <= 1  # not a grey tile
    got = read_rows(out)[0]
    assert got["status"] == "interrupted" and float(got["val_swing_db"]) >= 0


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_page_in_headless_chromium(compared):
    from playwright.sync_api import sync_playwright

    psnr = {r["run"]: float(r["val_psnr"]) for r in read_rows(compared) if r["val_psnr"]}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto((compared / "index.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
            )
            assert len(images) == 5, images  # pareto, 2 grids, 2 strips
            assert all(ok and width > 0 for _, ok, width in images), images

            def order():
                return page.eval_on_selector_all(
                    "#metrics tbody tr", "rs => rs.map(r => r.dataset.run)"
                )

            before = order()
            page.click("#metrics th[data-key=val_psnr]")
            ascending = order()
            page.click("#metrics th[data-key=val_psnr]")
            descending = order()
        finally:
            browser.close()
    by_psnr = sorted(psnr, key=psnr.get)
    failed = [r for r in before if r not in psnr]
    assert ascending == by_psnr + failed  # runs without a PSNR stay at the bottom
    assert descending == by_psnr[::-1] + failed
    assert before not in (ascending, descending)  # the failed run started in the middle


def test_gflops_counted_on_meta_match_a_cpu_pass():
    import torch

    from toonclip.models.cost import count_gflops, count_gflops_direct

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 3, 1)).eval()  # fmt: skip
    expected = 2 * 256 * 256 * (8 * 3 * 9 + 3 * 8) / 1e9  # FLOPs = 2 x MACs, biases not counted
    assert count_gflops(net) == pytest.approx(expected) == count_gflops_direct(net)


def test_eval_figures_and_gain_over_identity(tmp_path):
    """eval.json (newest wins) or summary.json final+identity give the gain columns; else '-'."""
    import os

    def make_run(name: str, summary: dict) -> Path:
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"status": "finished", **summary}))
        return run

    best = {"best": {"val/psnr": 20.0, "val/ssim": 0.5}}
    evaluated = make_run("evaluated", best)
    for folder, psnr, age in (("val_32px", 21.5, 0), ("val_64px", 30.0, 100)):
        (evaluated / "eval" / folder).mkdir(parents=True)
        figures = {"psnr": psnr, "ssim": 0.6, "l1": 0.1, "identity_psnr": 20.0,
                   "identity_ssim": 0.55, "identity_l1": 0.08, "split": "val"}  # fmt: skip
        (evaluated / "eval" / folder / "eval.json").write_text(json.dumps(figures))
        past = (evaluated / "eval" / folder / "eval.json").stat().st_mtime - age
        os.utime(evaluated / "eval" / folder / "eval.json", (past, past))
    final = {"final": {"val/psnr": 18.0, "val/ssim": 0.5, "val/l1": 0.1},
             "identity": {"val/psnr": 17.0, "val/ssim": 0.52, "val/l1": 0.08}}  # fmt: skip
    summarised = make_run("summarised", {**best, **final})
    old = make_run("old", best)

    out = tmp_path / "out"
    compare([str(p) for p in (evaluated, summarised, old)], out=out, latency_runs=0,
            log=lambda m: None)  # fmt: skip
    rows = {r["run"]: r for r in read_rows(out)}
    got = rows["evaluated"]  # the newest eval.json (val_32px), not the older val_64px
    assert float(got["eval_psnr"]) == 21.5 and float(got["identity_psnr"]) == 20.0
    assert float(got["gain_psnr"]) == pytest.approx(1.5)
    assert float(got["gain_ssim"]) == pytest.approx(0.05)
    assert got["eval_source"] == "eval/val_32px"
    got = rows["summarised"]
    assert float(got["eval_psnr"]) == 18.0 and float(got["identity_psnr"]) == 17.0
    assert float(got["gain_psnr"]) == pytest.approx(1.0)
    assert float(got["gain_ssim"]) == pytest.approx(-0.02)
    assert got["eval_source"] == "summary.json"
    assert all(rows["old"][k] == "" for k in ("eval_psnr", "identity_psnr", "gain_psnr"))

    md = (out / "metrics.md").read_text().splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    cells = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
             for ln in md[2:5]}  # fmt: skip
    for name, psnr, ssim in (("evaluated", "+1.50", "+0.050"), ("summarised", "+1.00", "-0.020")):
        assert cells[name][head.index("gain PSNR (dB)")] == psnr
        assert cells[name][head.index("gain SSIM")] == ssim
    assert cells["old"][head.index("identity PSNR (dB)")] == "-"
    assert cells["old"][head.index("gain PSNR (dB)")] == "-"
    html = (out / "index.html").read_text()
    assert 'data-key="gain_psnr"' in html and ">+1.50</td>" in html and ">-</td>" in html

    # Grid headers show best.ckpt's PSNR, so their gain is best minus identity (summarised:
    # +3.00, where the table's +1.00 is the final validation's); an eval.json's gain (its own
    # checkpoint and size) is not put beside it, and without an identity there is no gain line.
    runs = discover([evaluated, summarised, old])
    assert G.header(runs[0], 20).splitlines()[-1] == "PSNR 20.00 dB"
    assert G.header(runs[1], 20).splitlines()[-2:] == ["PSNR 20.00 dB", "gain +3.00 dB"]
    assert G.header(runs[2], 20).splitlines()[-1] == "PSNR 20.00 dB"


def test_pareto_labels_drop_shared_parts_and_do_not_overprint(tmp_path):
    from matplotlib.figure import Figure

    from toonclip.compare.plot import _label_offsets, short_labels

    names = ["unet__r18__lr-1", "unet__r18__lr-2", "unet__r18__lr-3"]
    assert short_labels(names) == ["lr-1", "lr-2", "lr-3"]
    assert short_labels(["unet__r18"]) == ["unet\nr18"]
    ax = Figure(dpi=110).subplots()
    pts = [(100.0, 17.00), (100.0, 17.01), (100.0, 15.0)]
    ax.scatter(*zip(*pts, strict=True))
    offsets = _label_offsets(ax, pts, ["a\nb", "c\nd", "e"])
    assert offsets[1] == 0 and offsets[0] < -15  # the lower of two close runs moves down
    assert offsets[2] == 0  # a run far away keeps its place
