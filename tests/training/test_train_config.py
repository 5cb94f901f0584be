"""Training configs: valid files load, invalid ones give one-line messages naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from tiny_cohort import base_table, make_config

from napari_freqseg.training.config import ConfigError, load_config
from napari_freqseg.training.registry import TrainSetup, build_components

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def table(tmp_path: Path) -> dict:
    """A valid config table (parsing does not read the cohort)."""
    return base_table(tmp_path / "cohort.csv", tmp_path / "cache")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.cohort.is_absolute() and cfg.data.cohort.name.endswith(".csv")
    assert cfg.data.cohort.parent == path.parent  # paths resolve against the config's folder
    assert cfg.components and all(t.get("enabled", True) is not None for t in cfg.components.values())


def test_load_config_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "run.toml"
    f.write_text('[data]\ncohort = "../c.csv"\nclasses = ["bg", "fg"]\n[train]\nval_every = 0\n[components.supervised]\n')
    cfg = load_config(f)
    assert cfg.data.cohort == tmp_path / "c.csv"
    assert cfg.data.cache_dir == tmp_path / "sub" / "cache"
    assert cfg.name == "run" and cfg.train.iterations == 1000


def mutate(table: dict, path: str, value: object) -> dict:
    t = copy.deepcopy(table)
    *parents, last = path.split(".")
    node = t
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return t


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("train.iteration", 10, "[train] unknown key 'iteration' (did you mean 'iterations'?)"),
        ("train.iterations", "many", "[train] iterations must be an integer, not 'many'"),
        ("train.iterations", 0, "[train] iterations must be at least 1"),
        ("train.lr", True, "[train] lr must be a number"),
        ("train.schedule", "cosine", "schedule = 'cosine' (choose from onecycle, poly, constant)"),
        ("train.device", "gpu", "device = 'gpu' (use auto, cpu, cuda or cuda:N)"),
        ("train.ema_decay", 1.5, "[train] ema_decay must be between 0.0 and 1.0"),
        ("data.patch_size", [16, 16], "[data] patch_size must be a list of 3 integers"),
        ("data.classes", ["only"], "classes needs at least two names"),
        ("data.normalization", {"method": "robust"}, "unknown normalisation 'robust'"),
        ("data.labeled.frist", 2, "[data.labeled] unknown key 'frist' (did you mean 'first'?)"),
        ("data.label_map", {"1": 5}, "label_map maps to class 5, but there are 2 classes"),
        ("model.normalization", "layer", "[model] normalization 'layer' is unknown"),
        ("model.architecture", "swin", "[model] architecture 'swin' is unknown (known: "),
        ("components.mean_teacher", {}, "need unlabeled data: add [data.unlabeled]"),
        ("optimizer", {}, "unknown key 'optimizer'"),
    ],
)
def test_bad_config_messages(table: dict, tmp_path: Path, path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(mutate(table, path, value), tmp_path)
    text = str(err.value)
    assert message in text and text.startswith("test.toml") and "\n" not in text


def test_val_every_needs_val_cases(table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(table)
    del t["data"]["val"]
    with pytest.raises(ConfigError, match=r"val_every needs \[data.val\]"):
        make_config(t, tmp_path)
    t["train"]["val_every"] = 0
    assert make_config(t, tmp_path).data.val is None


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\ncohort = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    missing = tmp_path / "nodata.toml"
    missing.write_text('name = "x"\n')
    with pytest.raises(ConfigError, match=r"missing \[data\] section"):
        load_config(missing)


def test_overrides_revalidate(table: dict, tmp_path: Path) -> None:
    cfg = make_config(table, tmp_path)
    assert cfg.with_overrides(iterations=7, device=None).train.iterations == 7
    assert cfg.with_overrides(iterations=7).raw["train"]["iterations"] == 7
    with pytest.raises(ConfigError, match="device = 'tpu'"):
        cfg.with_overrides(device="tpu")


def _setup() -> TrainSetup:
    import torch

    from napari_freqseg.models.vnet import VNet

    net = VNet(n_filters=2)
    return TrainSetup(
        n_classes=2,
        student=net,
        feature_channels=2,
        total_iterations=10,
        patch_size=(16, 16, 16),
        device=torch.device("cpu"),
        make_teacher=lambda: VNet(n_filters=2),
    )


def test_component_tables_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"\[components.superviced\]: unknown component \(known: .*supervised"):
        build_components({"superviced": {}}, _setup())
    with pytest.raises(ConfigError, match=r"\[components.mean_teacher\] threshold = 2 is out of range"):
        build_components({"mean_teacher": {"threshold": 2}}, _setup())
    with pytest.raises(ConfigError, match=r"unknown key 'rampupp' \(did you mean 'rampup'\?\)"):
        build_components({"mean_teacher": {"rampupp": 0.1}}, _setup())
    with pytest.raises(ConfigError, match="kind = 'l2' \\(choose from mse, pseudo\\)"):
        build_components({"mean_teacher": {"kind": "l2"}}, _setup())
    with pytest.raises(ConfigError, match="no component is enabled"):
        build_components({"supervised": {"enabled": False}}, _setup())


def test_teacher_only_when_a_component_asks() -> None:
    s = _setup()
    build_components({"supervised": {}}, s)
    assert s.teacher is None
    comps = build_components({"supervised": {}, "mean_teacher": {}}, s)
    assert [c.name for c in comps] == ["supervised", "mean_teacher"] and s.teacher is not None
