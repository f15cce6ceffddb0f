"""`toonclip sweep`: sweep files, member outcomes, launchers, reruns, and a real tiny sweep."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from toonclip.cli import main
from toonclip.errors import ConfigError
from toonclip.sweep import load_sweep, run_sweep
from toonclip.sweep.index import INDEX_JSON, INDEX_MD
from toonclip.sweep.launch import LauncherConfig
from toonclip.sweep.spec import format_value

# Stands in for `toonclip train` in the launcher tests: behaves as the member's `fake.mode` says,
# like training does (summary.json, an `error:` line on stderr, a non-zero exit, a kill).
STUB = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    mode, run_dir, calls = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    with open(calls, "a") as f:
        f.write(run_dir.name + "\\n")
    def summary(status, error=None):
        data = {"name": run_dir.name, "status": status, "error": error}
        (run_dir / "summary.json").write_text(json.dumps(data))
    summary("running")
    print("training", mode, flush=True)
    if mode == "nan":
        summary("failed", "loss is NaN")
        print("error: loss is NaN at step 2; lower optim.lr", file=sys.stderr)
        sys.exit(2)
    if mode == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "nosummary":
        (run_dir / "summary.json").unlink()
        sys.exit(0)
    marker = run_dir.parent / "flaky.marker"
    if mode == "flaky" and not marker.exists():
        marker.write_text("failed once")
        print("error: transient failure", file=sys.stderr)
        sys.exit(1)
    summary("finished")
    """
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def stub(tmp_path):
    """(command builder, calls file): members run STUB instead of training."""
    script = write(tmp_path / "stub.py", STUB)
    calls = tmp_path / "calls.txt"

    def command(member, run_dir):
        return [sys.executable, str(script), member.params["fake.mode"], str(run_dir), str(calls)]

    return command, calls


def members(index: dict) -> dict[str, dict]:
    return {m["name"]: m for m in index["members"]}


def test_grid_members_extras_and_overrides(tmp_path):
    path = write(
        tmp_path / "s.yaml",
        """
        grid:
          model.arch: [unetplusplus, unet]
          model.encoder: [mobilenetv3_large_100, efficientnet-b0]
        members_extra:
          - {model.arch: deeplabv3plus, model.encoder: resnet18}
        overrides:
          data: {size: 128, root: /data/my faces}
          trainer.max_steps: 300
          model.channels_last: true
          loss.layers: [relu1_2, relu2_2]
        """,
    )
    sweep = load_sweep(path, ["trainer.max_steps=5", "+extra.flag=1"])
    names = [m.name for m in sweep.members]
    assert names == [
        "unetplusplus__mobilenetv3_large_100",
        "unetplusplus__efficientnet-b0",
        "unet__mobilenetv3_large_100",
        "unet__efficientnet-b0",
        "deeplabv3plus__resnet18",
    ]
    first = sweep.members[0].overrides
    # File overrides (nested keys flattened, values in Hydra syntax), then the member's own
    # keys, then the command line, which replaces the file's value instead of repeating it.
    assert first == (
        "data.size=128",
        "data.root='/data/my faces'",
        "model.channels_last=true",
        "loss.layers=[relu1_2,relu2_2]",
        "model.arch=unetplusplus",
        "model.encoder=mobilenetv3_large_100",
        "trainer.max_steps=5",
        "+extra.flag=1",
    )
    assert sweep.members[-1].arch == "deeplabv3plus"


def test_other_swept_keys_name_the_runs(tmp_path):
    path = write(
        tmp_path / "s.yaml",
        "grid: {model.arch: [unet], model.encoder: [resnet18], optim.lr: [0.001, 0.0003]}\n",
    )
    assert [m.name for m in load_sweep(path).members] == [
        "unet__resnet18__lr-0.001",
        "unet__resnet18__lr-0.0003",
    ]
    assert format_value("it's") == "'it\\'s'"
    assert format_value(None) == "null"
    # A member that sets a key to null (or false, or a list) differs from one that leaves it.
    path = write(
        tmp_path / "e.yaml",
        "overrides: {model.arch: unet, model.encoder: resnet18}\n"
        "members_extra:\n  - {data.size: 64}\n  - {data.size: 64, ema.decay: null}\n"
        "  - {data.size: 64, model.residual: false}\n"
        "  - {data.size: 64, data.augment.crop_scale: [0.7, 1.0]}\n",
    )
    members = load_sweep(path).members
    assert [m.name for m in members] == [
        "unet__resnet18",
        "unet__resnet18__decay-null",
        "unet__resnet18__residual-false",
        "unet__resnet18__crop_scale-0.7_1.0",
    ]
    assert "ema.decay=null" in members[1].overrides
    assert "data.augment.crop_scale=[0.7,1.0]" in members[3].overrides


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "does not exist"),
        ("overrides: {data.size: 64}\n", "has no 'grid:'"),
        (
            "grid: {model.arch: [unet]}\noverides: {}\n",
            "unknown top-level key 'overides' (did you mean 'overrides'?)",
        ),
        ("grid: [unet, fpn]\n", "'grid:' must map keys to lists"),
        ("grid: {model.arch: [unet], model.encoder: []}\n", "empty list"),
        ("grid: {model.arch: [unet]}\n", "no model.arch or model.encoder"),
        (
            "grid: {model.arch: [unet], model.encoder: [resnet18]}\noverrides: {model.arch: fpn}\n",
            "set it in one place",
        ),
        (
            "grid: {model.arch: [unet], model.encoder: [resnet18]}\noverrides: {run_dir: x}\n",
            "is set by the sweep",
        ),
        ("grid: {model.arch: [unet\n", "not valid YAML"),
    ],
)
def test_bad_sweep_file_is_one_line_error(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["sweep", str(path), f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0], err
    assert expected in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_launcher_options(tmp_path):
    path = write(tmp_path / "s.yaml", "grid: {model.arch: [unet], model.encoder: [resnet18]}\n")
    with pytest.raises(ConfigError, match="launcher=ray is not known"):
        run_sweep(path, out=tmp_path / "o", launcher={"launcher": "ray"})
    with pytest.raises(ConfigError, match="unknown launcher option 'worker'"):
        run_sweep(path, out=tmp_path / "o", launcher={"worker": 2})


@pytest.mark.parametrize(
    "launcher",
    [
        LauncherConfig("sequential"),
        LauncherConfig("parallel", workers=2),
        LauncherConfig("submitit_local", workers=2, poll_s=0.2),
    ],
    ids=lambda c: c.name,
)
def test_each_member_ends_finished_or_failed_with_its_reason(tmp_path, stub, launcher):
    command, calls = stub
    path = write(
        tmp_path / "s.yaml",
        """
        grid:
          model.arch: [unet]
          model.encoder: [resnet18]
          fake.mode: [ok, nan, oom, nosummary]
        """,
    )
    out = tmp_path / "sweep"
    index = members(run_sweep(path, out=out, launcher=launcher, command=command, log=lambda m: 0))
    got = {name.split("mode-")[1]: (m["status"], m["error"]) for name, m in index.items()}
    assert got == {
        "ok": ("finished", None),
        "nan": ("failed", "loss is NaN at step 2; lower optim.lr"),
        "oom": ("failed", "killed by SIGKILL (out of memory?)"),  # not the log's last line
        "nosummary": ("failed", "training exited 0 but summary.json does not say finished"),
    }
    assert sorted(calls.read_text().split()) == sorted(index)
    on_disk = members(json.loads((out / INDEX_JSON).read_text()))
    assert {k: v["status"] for k, v in on_disk.items()} == {
        k: v["status"] for k, v in index.items()
    }
    log = (out / "unet__resnet18__mode-nan" / "train.log").read_text()
    assert "training nan" in log and "error: loss is NaN" in log
    assert (
        "| [unet__resnet18__mode-nan](unet__resnet18__mode-nan/) | unet | resnet18 | failed |"
        in (out / INDEX_MD).read_text()
    )
    job_ids = [m["job_id"] for m in index.values()]
    assert all(job_ids) if launcher.name == "submitit_local" else not any(job_ids)


def test_rerun_skips_finished_retries_failed(tmp_path, stub):
    command, calls = stub
    path = write(
        tmp_path / "s.yaml",
        "grid: {model.arch: [unet], model.encoder: [resnet18], fake.mode: [ok, flaky]}\n",
    )
    out, quiet = tmp_path / "sweep", (lambda m: None)
    first = members(run_sweep(path, out=out, command=command, log=quiet))
    assert [m["status"] for m in first.values()] == ["finished", "failed"]
    assert first["unet__resnet18__mode-flaky"]["error"] == "transient failure"
    ok_summary = out / "unet__resnet18__mode-ok" / "summary.json"
    stamp = ok_summary.stat().st_mtime_ns

    second = members(run_sweep(path, out=out, command=command, log=quiet))
    assert [m["status"] for m in second.values()] == ["finished", "finished"]
    assert second["unet__resnet18__mode-ok"].get("skipped") is True
    assert calls.read_text().split() == [
        "unet__resnet18__mode-ok",
        "unet__resnet18__mode-flaky",
        "unet__resnet18__mode-flaky",
    ]
    assert ok_summary.stat().st_mtime_ns == stamp

    with pytest.raises(ConfigError, match="other overrides; use out=NEW_DIR, or force=true"):
        run_sweep(path, ["data.size=64"], out=out, command=command, log=quiet)
    run_sweep(path, ["data.size=64"], out=out, command=command, log=quiet, force=True)
    assert len(calls.read_text().split()) == 5


def test_tiny_sweep_two_finish_one_fails_rerun_skips(
    tmp_path, synthetic_root, tiny_overrides, capsys
):
    """The real thing: 3 members at 32 px, 2 steps; one has a misspelt backbone."""
    path = write(
        tmp_path / "tiny.yaml",
        """
        grid:
          model.arch: [unet, fpn]
          model.encoder: [mobilenet_v2]
        members_extra:
          - {model.arch: unet, model.encoder: mobilenetv3_larg_100}
        overrides:
          data.val_fraction: 0.25
        """,
    )
    extra = [
        o for o in tiny_overrides(synthetic_root, Path("unused")) if not o.startswith("run_dir=")
    ]
    out = tmp_path / "sweep"
    argv = ["sweep", str(path), f"out={out}", "launcher=parallel", "workers=2", *extra]
    assert main(argv) == 1  # one member failed
    index = members(json.loads((out / INDEX_JSON).read_text()))
    assert {k: v["status"] for k, v in index.items()} == {
        "unet__mobilenet_v2": "finished",
        "fpn__mobilenet_v2": "finished",
        "unet__mobilenetv3_larg_100": "failed",
    }
    assert (
        "unknown model.encoder 'mobilenetv3_larg_100'"
        in index["unet__mobilenetv3_larg_100"]["error"]
    )
    assert "nearest: mobilenetv3_large_100" in index["unet__mobilenetv3_larg_100"]["error"]
    for name in ("unet__mobilenet_v2", "fpn__mobilenet_v2"):
        run = out / name
        assert json.loads((run / "summary.json").read_text())["status"] == "finished"
        assert (run / "checkpoints" / "best.ckpt").is_file()
        assert f"run_dir={run}" in (run / "train.log").read_text().splitlines()[0]
    failed = json.loads((out / "unet__mobilenetv3_larg_100" / "summary.json").read_text())
    assert failed["status"] == "failed"
    stamps = {
        n: (out / n / "summary.json").stat().st_mtime_ns
        for n in ("unet__mobilenet_v2", "fpn__mobilenet_v2")
    }
    capsys.readouterr()

    assert main(argv) == 1
    assert "3 members, 0 to run, 2 already finished" in capsys.readouterr().out
    again = members(json.loads((out / INDEX_JSON).read_text()))
    assert [again[n].get("skipped") for n in stamps] == [True, True]
    assert again["unet__mobilenetv3_larg_100"]["status"] == "failed"
    assert {n: (out / n / "summary.json").stat().st_mtime_ns for n in stamps} == stamps


def test_slurm_launcher_maps_job_parameters(tmp_path, monkeypatch, stub):
    """No cluster here: a fake `srun` lets submitit build its SlurmExecutor; sbatch is missing."""
    from toonclip.errors import ToonclipError
    from toonclip.sweep.launch import make_executor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigError, match='launcher=slurm: Could not detect "srun"'):
        make_executor(LauncherConfig("slurm"), tmp_path)

    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    slurm = {"partition": "gpu", "gpus_per_node": 1, "account": "lab", "timeout_min": 30}
    params = make_executor(LauncherConfig("slurm", slurm=slurm), tmp_path)._executor.parameters
    assert {k: params[k] for k in ("partition", "gpus_per_node", "account", "time")} == {
        "partition": "gpu",
        "gpus_per_node": 1,
        "account": "lab",
        "time": 30,
    }
    with pytest.raises(ConfigError, match="Unknown argument 'partitio'"):
        make_executor(LauncherConfig("slurm", slurm={"partitio": "gpu"}), tmp_path)

    command, _ = stub
    path = write(
        tmp_path / "s.yaml",
        "grid: {model.arch: [unet], model.encoder: [resnet18], fake.mode: [ok]}\n",
    )
    with pytest.raises(ToonclipError, match="could not submit unet__resnet18: FileNotFoundError"):
        run_sweep(
            path, out=tmp_path / "o", launcher={"launcher": "slurm"}, command=command, log=print
        )
    index = json.loads((tmp_path / "o" / INDEX_JSON).read_text())
    assert [m["status"] for m in index["members"]] == ["pending"]


def test_dry_run_lists_members_and_writes_nothing(tmp_path, capsys):
    path = write(
        tmp_path / "s.yaml", "grid: {model.arch: [unet, fpn], model.encoder: [resnet18]}\n"
    )
    assert (
        main(["sweep", str(path), f"out={tmp_path / 'out'}", "dry_run=true", "data.size=64"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "unet__resnet18: toonclip train model.arch=unet model.encoder=resnet18 data.size=64",
        "fpn__resnet18: toonclip train model.arch=fpn model.encoder=resnet18 data.size=64",
        "2 members",
    ]
    assert not (tmp_path / "out").exists()
