"""Every config composes; bad overrides give one clear line."""

from __future__ import annotations

import lightning as L
import pytest
from conftest import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from toonclip.config import compose, group_options
from toonclip.errors import ConfigError
from toonclip.sweep import load_sweep
from toonclip.sweep.runner import prevalidate
from toonclip.training import validate
from toonclip.training.trainer import trainer_kwargs

SWEEPS = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("experiment", [None, *group_options("experiment")])
def test_every_experiment_composes_into_a_trainer(experiment, tmp_path):
    cfg = compose([f"experiment={experiment}"] if experiment else [])
    assert cfg.data.size % 32 == 0
    kwargs = trainer_kwargs(cfg)
    kwargs.update(
        accelerator="cpu",
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    L.Trainer(**kwargs)  # Lightning accepts every key


@pytest.mark.parametrize("group", ["data", "model", "loss", "optim", "trainer"])
def test_every_group_option_composes(group):
    seen = {}
    for option in group_options(group):
        picked = OmegaConf.to_yaml(compose([f"{group}={option}"])[group])
        assert picked not in seen, f"{group}={option} composes the same as {seen.get(picked)}"
        seen[picked] = option
    assert len(seen) == len(group_options(group)) >= 1


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_shipped_sweep_member_composes_and_passes_the_checks(path, tmp_path):
    # A teacher folder that exists, for the distillation sweeps (their command line adds one).
    sweep = load_sweep(
        path, [f"distill.teacher={tmp_path}"] if "distill" in path.read_text() else []
    )
    assert len(sweep.members) >= 2
    for member in sweep.members:
        assert prevalidate(member) is None, member.name  # the sweep's own name check
        cfg = compose(list(member.overrides))
        validate.check_train_values(cfg)
        for key, value in member.params.items():
            if "." not in key:  # a group choice (experiment=, loss=), not a value
                continue
            assert OmegaConf.select(cfg, key) == value, f"{member.name}: {key}"


def test_loss_config_instantiates_the_loss():
    cfg = compose(["loss.vgg_weights=none"])
    loss = instantiate(cfg.loss)
    assert set(loss.layer_weights) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3"}
    assert loss.style_weight == cfg.loss.style_weight


def test_required_overrides_from_the_issue_apply():
    cfg = compose(
        [
            "data.root=/x",
            "data.size=64",
            "data.batch_size=3",
            "model.arch=unet",
            "model.encoder=resnet18",
            "trainer.max_steps=7",
            "trainer.max_epochs=2",
            "run_dir=/tmp/r",
        ]
    )
    assert (cfg.data.root, cfg.data.size, cfg.data.batch_size) == ("/x", 64, 3)
    assert (cfg.model.arch, cfg.model.encoder) == ("unet", "resnet18")
    assert (cfg.trainer.max_steps, cfg.trainer.max_epochs, cfg.run_dir) == (7, 2, "/tmp/r")


def test_data_root_follows_environment_variable(monkeypatch):
    monkeypatch.setenv("TOONCLIP_DATA", "/somewhere/else")
    assert compose([]).data.root == "/somewhere/else"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.sizee=64", "did you mean data.size?"),
        ("trainer.max_step=3", "did you mean trainer.max_steps?"),
        ("experiment=cpu_quik", "did you mean experiment=cpu_quick?"),
    ],
)
def test_bad_override_is_one_line_with_a_hint(override, expected):
    with pytest.raises(ConfigError) as err:
        compose([override])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_environment_yml_lists_every_pyproject_dependency():
    """environment.yml (conda-forge) stays in step with pyproject.toml: same packages, same bounds."""
    import re

    import tomllib
    import yaml
    from conftest import REPO

    # pip name -> conda-forge name, where they differ
    conda_name = {
        "torch": "pytorch",
        "opencv-python-headless": "py-opencv",
        "matplotlib": "matplotlib-base",
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    for extra in extras["all"][0].split("[")[1].rstrip("]").split(","):
        wanted += extras[extra]
    env = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    listed = {}
    for spec in [d for d in env if isinstance(d, str)] + pip:
        name = re.split(r"[<>=\s]", spec.strip(), maxsplit=1)[0]
        listed[name] = spec.replace(" ", "").split("#")[0]
    for req in wanted:
        name = re.split(r"[<>=\[]", req, maxsplit=1)[0]
        bounds = req[len(name) :].replace(" ", "")
        target = conda_name.get(name, name)
        assert target in listed, f"{name} from pyproject.toml is missing in environment.yml"
        assert listed[target] == target + bounds, f"{target}: {listed[target]} vs {req}"
    assert "-e .[all]" in [p.split("#")[0].strip() for p in pip]
