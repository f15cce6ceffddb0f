"""Bad values fail before anything is written; a failed resume never damages the run it resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, cli, error_line, one_error, run_cli

from toonclip.errors import ConfigError
from toonclip.sweep.job import outcome
from toonclip.training.distributed import ExceptionCheckpoint, checkpoint_step
from toonclip.training.run import prepare


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.size=abc", "data.size=abc: use an integer"),
        ("data.size=0", "data.size=0"),
        ("data.size=-32", "data.size=-32"),
        ("data.size=48", "multiple of 32"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.batch_size=1", "BatchNorm"),  # at 32 px the encoder's last stage is 1x1
        ("optim.optimizer.lr=-0.001", "optim.optimizer.lr=-0.001: use a number > 0"),
        ("optim.optimizer.lr=abc", "optim.optimizer.lr=abc"),
        ("trainer.precision=bogus", "trainer.precision=bogus: use one of"),
        ("trainer.max_steps=abc", "trainer.max_steps=abc"),
        ("loss.vgg_weights=bogus", "loss.vgg_weights=bogus"),
        ("loss.pixel_weight=-1", "loss.pixel_weight=-1"),
        ("loss.pixel_criterion=l3", "loss.pixel_criterion=l3: use one of l1, l2"),
        ("loss.criterion=huber", "loss.criterion=huber: use one of l1, l2"),
        ("ema.decay=1.5", "ema.decay=1.5"),
        ("optim.optimizer.fused=banana", "optim.optimizer.fused=banana: use true"),
        ("model.channels_last=fals", "model.channels_last=fals: use model.channels_last=true or"),
        ("model.residual=maybe", "model.residual=maybe: use model.residual=true or"),
        ("trainer.deterministic=yes", "or trainer.deterministic=warn"),
        ("model.arch=unetplusplus model.encoder=mit_b0", "cannot use model.encoder=mit_b0"),
        (
            "optim.scheduler={_target_:toonclip.training.schedule.nope,_partial_:true}",
            "optim.scheduler._target_=toonclip.training.schedule.nope: no class or function",
        ),
        ("loss._target_=toonclip.losses.nope.Loss", "loss._target_=toonclip.losses.nope.Loss"),
    ],
)
def test_bad_values_fail_before_a_run_folder_exists(
    tmp_path, synthetic_root, tiny_overrides, override, needle
):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        prepare([*tiny_overrides(synthetic_root, run_dir), *override.split()])
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not run_dir.exists()


def test_bad_value_on_the_command_line_is_one_line_and_exit_2(
    tmp_path, synthetic_root, tiny_overrides
):
    proc = run_cli("train", *tiny_overrides(synthetic_root, tmp_path / "run"), "data.size=50")
    assert proc.returncode == 2 and "data.size=50" in error_line(proc)
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_a_target_hydra_cannot_build_is_one_line_naming_the_key(
    capsys, tmp_path, synthetic_root, tiny_overrides
):
    # The target imports, so the config checks pass; its constructor refuses the argument inside
    # fit, after the run folder exists: one line all the same, and the folder says "failed".
    run_dir = tmp_path / "run"
    argv = [*tiny_overrides(synthetic_root, run_dir), "+loss.bogus_weight=1"]
    code, _, err = cli(capsys, "train", *argv)
    line = one_error(err)
    assert code == 2 and "PerceptualStyleLoss" in line and "bogus_weight" in line
    assert "full_key: loss" in line and "fix that key" in line
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


@pytest.fixture
def copied_run(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    return run_dir


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.optimizer.lr=-1", "optim.optimizer.lr=-1"),
        ("model.arch=unet", "was trained with model.arch=unetplusplus"),
        ("model.residual=false", "model.residual"),
        ("model.residual_blur=2.0", "model.residual_blur"),
        ("model.decoder_norm=none", "was trained with model.decoder_norm=batchnorm"),
    ],
)
def test_failed_resume_leaves_the_checkpoint_untouched(copied_run, override, needle):
    last = copied_run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ConfigError) as info:
        prepare([f"run_dir={copied_run}", "resume=true", override])
    assert needle in str(info.value)
    assert last.read_bytes() == before and checkpoint_step(last) == 2


def test_a_run_from_before_residual_blur_resumes_only_with_the_plain_skip(copied_run):
    from omegaconf import OmegaConf

    saved = OmegaConf.load(copied_run / "config.yaml")
    del saved.model["residual_blur"]  # a config.yaml written before the option existed
    OmegaConf.save(saved, copied_run / "config.yaml")
    with pytest.raises(ConfigError, match=r"trained with model\.residual_blur=0\.0"):
        prepare([f"run_dir={copied_run}", "resume=true", "model.residual_blur=1.0"])
    prepare([f"run_dir={copied_run}", "resume=true", "model.residual_blur=0.0"])


def test_exception_checkpoint_never_writes_at_or_below_the_floor(tmp_path):
    saved = []
    callback = ExceptionCheckpoint(dirpath=tmp_path, filename="last", floor_step=50)
    strategy = SimpleNamespace(save_checkpoint=lambda ckpt, path: saved.append(path))
    trainer = SimpleNamespace(
        global_step=0,
        world_size=1,
        is_global_zero=True,
        save_checkpoint=lambda path, **kw: saved.append(path),
        strategy=strategy,
        _checkpoint_connector=SimpleNamespace(dump_checkpoint=lambda **kw: {}),
    )
    callback.on_exception(trainer, None, RuntimeError("boom"))
    trainer.global_step = 50
    callback.on_exception(trainer, None, RuntimeError("boom"))
    assert saved == []
    trainer.global_step = 51
    callback.on_exception(trainer, None, RuntimeError("boom"))
    assert len(saved) == 1


def test_checkpoint_step_reads_the_step_without_running_code(tiny_run, tmp_path):
    assert checkpoint_step(tiny_run / "checkpoints" / "last.ckpt") == 2
    bad = tmp_path / "bad.ckpt"
    torch.save({"global_step": SimpleNamespace(x=1)}, bad)
    with pytest.raises(Exception, match="not a toonclip checkpoint"):
        checkpoint_step(bad)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopped_run_exits_non_zero_with_the_resume_command(
    tmp_path, synthetic_root, tiny_overrides, sig, code
):
    run_dir = tmp_path / "run"
    # -X faulthandler: a run that hangs after the signal is aborted below and prints where
    cmd = [sys.executable, "-X", "faulthandler", "-m", "toonclip.cli", "train"]
    cmd += [*tiny_overrides(synthetic_root, run_dir, steps=100000), "trainer.val_every_n_steps=50"]
    env = {**os.environ, "TOONCLIP_OFFLINE": "1"}
    # A shell without job control starts background jobs with SIGINT ignored, and the child
    # inherits that (so CI under `cmd &` would never see the Ctrl-C): give it the default back.
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last, deadline = run_dir / "checkpoints" / "last.ckpt", time.time() + 180
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack
        _, stderr = proc.communicate(timeout=30)
        pytest.fail(f"no exit 120 s after signal {sig}; stacks:\n{stderr[-4000:]}")
    assert proc.returncode == code, stderr[-1500:]
    assert f"toonclip train run_dir={run_dir} resume=true" in stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert checkpoint_step(last) > 0


@pytest.mark.parametrize(
    ("code", "summary_status", "expected"),
    [
        (143, "interrupted", "interrupted"),
        (-15, "running", "interrupted"),
        (-9, "running", "failed"),  # SIGKILL: most often the out-of-memory killer
        (1, "failed", "failed"),
    ],
)
def test_sweep_marks_a_stopped_member_interrupted(tmp_path, code, summary_status, expected):
    from toonclip.sweep.job import LOG_NAME

    (tmp_path / "summary.json").write_text(json.dumps({"status": summary_status}))
    (tmp_path / LOG_NAME).write_text("Epoch 0: 40% 2/5\n")
    status, reason = outcome(tmp_path, code)
    assert status == expected
    if code < 0:  # a signal says so, not the log's last progress line
        assert reason.startswith("killed by SIG") and "Epoch" not in reason


def test_last_checkpoint_also_has_a_wall_time_cadence(tmp_path):
    from toonclip.config import compose
    from toonclip.training.trainer import build_callbacks

    cfg = compose(["trainer.checkpoint_every_minutes=2"])
    timed = [
        c
        for c in build_callbacks(cfg, tmp_path)
        if getattr(c, "_train_time_interval", None) is not None
    ]
    assert len(timed) == 1 and timed[0]._train_time_interval.total_seconds() == 120
    assert timed[0].save_last
    cfg = compose(["trainer.checkpoint_every_minutes=null"])
    assert not [c for c in build_callbacks(cfg, tmp_path) if getattr(c, "_train_time_interval", 0)]


def test_the_step_and_the_timed_cadence_share_one_last_checkpoint(
    tmp_path, synthetic_root, tiny_overrides
):
    """Both write last.ckpt. With Lightning's version counter the second writer would go to
    last-v1.ckpt, which a resume never reads: its saves would be lost (and the run folder would
    hold a second full checkpoint)."""
    from toonclip.training.run import train

    overrides = [
        *tiny_overrides(synthetic_root, tmp_path / "run", steps=4),
        "trainer.checkpoint_every_n_steps=2",
        "trainer.checkpoint_every_minutes=0.0001",
        "trainer.log_every_n_steps=1",
    ]
    cfg, run_dir, ckpt = prepare(overrides)
    train(cfg, run_dir, ckpt_path=ckpt, overrides=overrides)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.ckpt", "last.ckpt"]
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 4


def _write_steps(path, steps, tag):
    path.write_text("step,val\n" + "".join(f"{s},{tag}\n" for s in steps))


def test_metrics_history_survives_repeated_crashes(tmp_path):
    import csv

    from toonclip.training import metrics_merge

    _write_steps(tmp_path / "metrics.csv", range(0, 10), "run")  # killed at step 10
    metrics_merge.set_aside(tmp_path)  # resume 1 (from step 5) ...
    _write_steps(tmp_path / "metrics.csv", range(5, 15), "resume1")  # ... killed again
    metrics_merge.set_aside(tmp_path)  # resume 2 (from step 12)
    _write_steps(tmp_path / "metrics.csv", range(12, 20), "resume2")
    metrics_merge.merge_back(tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [(int(r["step"]), r["val"]) for r in csv.DictReader(f)]
    assert [s for s, _ in rows] == list(range(20))
    assert rows[4][1] == "run" and rows[5][1] == "resume1" and rows[12][1] == "resume2"
    assert not (tmp_path / metrics_merge.BEFORE).exists()


def test_decompression_bomb_is_an_undecodable_file_and_the_good_files_are_written(
    tmp_path, monkeypatch
):
    import numpy as np
    from PIL import Image

    from toonclip.data.cache import decode_at
    from toonclip.data.io import load_rgb
    from toonclip.errors import DataError
    from toonclip.stylize.images import stylize_folder

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(src / "bomb.png")
    Image.new("RGB", (8, 8), (10, 200, 10)).save(src / "good.png")
    # Pillow refuses images over 2 * MAX_IMAGE_PIXELS; a low limit makes a 40x40 file a "bomb".
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    for decode in (load_rgb, lambda p: decode_at(p, 32)):
        with pytest.raises(DataError, match=r"bomb\.png.*safety limit"):
            decode(src / "bomb.png")
    result = stylize_folder(lambda im: np.asarray(im), src, tmp_path / "out", progress=False)
    assert result["written"] == 1 and result["failed"] == [str(src / "bomb.png")]
    assert (tmp_path / "out" / "good.png").is_file()


def test_damaged_disk_cache_is_rebuilt_with_a_warning(tmp_path, synthetic_root, caplog):
    from toonclip.data.cache import build_cache
    from toonclip.data.pairs import find_pairs

    pairs = find_pairs(synthetic_root, "ffhq", "comics_heroes")
    faces, _, _ = build_cache(pairs, 32, "disk", tmp_path)
    (cached,) = tmp_path.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # truncated
    again, _, kept = build_cache(pairs, 32, "disk", tmp_path)
    assert (again == faces).all() and len(kept) == len(pairs)
    assert "damaged" in caplog.text and "rebuilding" in caplog.text
    import numpy as np

    with np.load(cached) as z:  # the rebuilt file is whole again
        assert z["faces"].shape == faces.shape


def test_predict_partial_failure_writes_the_good_files_and_exits_1(
    tiny_checkpoint, tmp_path, capsys
):
    from PIL import Image

    from toonclip.predict import cli as predict

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (40, 40), (200, 120, 90)).save(src / "good.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    code = predict([f"ckpt={tiny_checkpoint}", f"input={src}", f"output={tmp_path / 'out'}"])
    assert code == 1 and (tmp_path / "out" / "good.png").is_file()
    assert "1 input(s) could not be decoded: broken.jpg" in capsys.readouterr().err


def test_unmatched_files_warned_once_and_broken_links_called_broken(tmp_path, caplog):
    from conftest import make_pairs

    from toonclip.data.pairs import find_pairs

    root = make_pairs(tmp_path / "d", n=3, size=32)
    (root / "ffhq" / "lonely.jpg").write_bytes((root / "ffhq" / "face_000.jpg").read_bytes())
    (root / "comics_heroes" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    for _ in range(2):
        assert len(find_pairs(root, "ffhq", "comics_heroes")) == 3
    assert caplog.text.count("without a partner") == 1
    assert "gone.png is a broken symbolic link" in caplog.text


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("size=abc", "size=abc: use a multiple of 32"),
        ("size=50", "size=50"),
        ("device=cuda:7", "device=cuda:7: no CUDA GPU"),
        ("device=banana", "device=banana: not a torch device"),
        ("output=FILE", "is a file; predict writes into a folder"),
    ],
)
def test_predict_bad_values_are_one_line(tiny_checkpoint, tmp_path, option, needle):
    from PIL import Image

    from toonclip.predict import cli as predict

    if torch.cuda.is_available() and option.startswith("device=cuda"):
        pytest.skip("a GPU is visible")
    face = tmp_path / "face.png"
    Image.new("RGB", (40, 40), (200, 120, 90)).save(face)
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    option = option.replace("FILE", str(taken))
    args = [f"ckpt={tiny_checkpoint}", f"input={face}", f"output={tmp_path / 'out'}", option]
    if option.startswith("output="):
        args = args[:2] + [option]
    with pytest.raises(ConfigError, match=needle):
        predict(args)
    assert taken.read_text() == "keep me" and not (tmp_path / "out").exists()


def test_commands_run_in_process_log_once_to_the_current_stderr(capsys, monkeypatch):
    """Each `main()` call sets up toonclip's logging; a second call in the same process (the
    test suite, an interactive session) must not add a second handler, and log lines must
    reach whatever sys.stderr is now, not the stream of the first call."""
    import io
    import logging

    from toonclip import cli as C

    C._setup_logging()
    C._setup_logging()
    logging.getLogger("toonclip.data.pairs").info("one line %d", 1)
    assert capsys.readouterr().err.count("one line 1") == 1
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    logging.getLogger("toonclip.data.pairs").warning("after the swap")
    assert "after the swap" in later.getvalue()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "ckpt=RUN", "spilt=val"], "toonclip eval has no option 'spilt' (did you mean split=?)"),
        (["predict", "ckpt=RUN", "inptu=a.jpg", "output=o"], "'inptu' (did you mean input=?)"),
        (["export", "ckpt=RUN", "fromat=onnx"], "'fromat' (did you mean format=?)"),
        (["export", "ckpt=RUN", "onnx"], "toonclip export: unexpected argument 'onnx'"),
        (["compare", "RUN", "laetncy=onnx"], "'laetncy' (did you mean latency=?)"),
        (["bench", "RUN", "thread=2"], "'thread' (did you mean threads=?)"),
        (["temporal", "RUN", "video=synthetic", "frame=3"], "'frame' (did you mean frames=?)"),
        (["stylize", "RUN", "inptu=a.jpg"], "'inptu' (did you mean input=?)"),
        (["demo", "RUN", "prot=7860"], "'prot' (did you mean port=?)"),
        # Before, a typo of source= was dropped and fetch went to the network instead.
        (["data", "fetch", "sourse=DIR"], "toonclip data fetch has no option 'sourse' (did you mean source=?)"),
    ],
)  # fmt: skip
def test_a_mistyped_option_names_the_nearest_one_before_any_work(capsys, tmp_path, argv, expected):
    """RUN does not exist: the option is checked first, so the line is about the typo."""
    argv = [a.replace("RUN", str(tmp_path / "no_run")).replace("DIR", str(tmp_path)) for a in argv]
    code, _, err = cli(capsys, *argv)
    line = one_error(err)
    assert code == 2 and expected in line and "valid: " in line, line
    assert not any(tmp_path.iterdir())  # nothing fetched or written


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "model.archh=x"], "did you mean model.arch?"),
        (["distill", "teacher=RUN", "student.encodr=x"], "did you mean model.encoder?"),
    ],
)
def test_a_mistyped_train_key_fails_before_torch_and_lightning_are_imported(argv, expected):
    """training/entry.py composes the command line first: a typo costs Hydra's ~0.2 s, not the
    ~6 s of importing Lightning, smp and timm."""
    code = (
        "import sys; from toonclip.cli import main; rc = main(sys.argv[1:]); "
        "print(rc, 'lightning' in sys.modules, 'torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.stdout.split() == ["2", "False", "False"], proc.stdout + proc.stderr
    assert expected in one_error(proc.stderr)
