"""Training data: case selection per setting, the model-grid cache, reproducible patch batches."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_cohort import SHAPE, make_config

from napari_freqseg.inference.predict import model_input
from napari_freqseg.io.volume import read_volume
from napari_freqseg.models.modelfile import ModelMeta
from napari_freqseg.models.preprocess import Normalization
from napari_freqseg.training.config import ConfigError, Selection
from napari_freqseg.training.data import (
    CaseRef,
    PatchSampler,
    assign_roles,
    cohort_cases,
    prepare_cases,
    select,
)


def refs() -> list[CaseRef]:
    return [CaseRef(f"{s}{i}", s, "train" if i < 3 else "val", f"{s}{i}.nii", f"{s}{i}_l.nii") for s in "abc" for i in range(4)]


def ids(cases: list[CaseRef]) -> list[str]:
    return [c.case_id for c in cases]


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        (Selection(split=("train",), first=2), ["a0", "a1"]),
        (Selection(split=("train",), skip=2, first=2), ["a2", "b0"]),
        (Selection(site=("b", "c"), split=("val",)), ["b3", "c3"]),
        (Selection(site=("a", "b"), split=("train",), first=1, per_site=True), ["a0", "b0"]),
        (Selection(split=("train",), skip=1, per_site=True), ["a1", "a2", "b1", "b2", "c1", "c2"]),
        (Selection(cases=("c2", "a1")), ["a1", "c2"]),
    ],
)
def test_selection(sel: Selection, expected: list[str]) -> None:
    assert ids(select(refs(), sel)) == expected


def test_roles_for_each_setting(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    # SSL: few labels from one centre, the rest of that centre unlabeled (labels never used).
    t["data"]["unlabeled"] = {"site": "a", "split": "train"}
    roles = assign_roles(refs(), make_config(t, tmp_path).data)
    assert ids(roles.labeled) == ["a0", "a1"] and ids(roles.unlabeled) == ["a2"]
    assert all(c.label is None for c in roles.unlabeled) and roles.sites == ["a"]
    # UDA: labeled source centre, unlabeled target centre, validation on the target.
    t["data"]["labeled"] = {"site": "a"}
    t["data"]["unlabeled"] = {"site": "b", "split": "train"}
    t["data"]["val"] = {"site": "b", "split": "val"}
    roles = assign_roles(refs(), make_config(t, tmp_path).data)
    assert ids(roles.labeled) == ["a0", "a1", "a2", "a3"] and ids(roles.unlabeled) == ["b0", "b1", "b2"]
    assert ids(roles.val) == ["b3"] and roles.sites == ["a", "b"]
    # Semi-DG: one label from each of two centres, their other cases unlabeled, an unseen centre for val.
    t["data"]["labeled"] = {"site": ["a", "b"], "split": "train", "first": 1, "per_site": True}
    t["data"]["unlabeled"] = {"site": ["a", "b"], "split": "train"}
    t["data"]["val"] = {"site": "c"}
    roles = assign_roles(refs(), make_config(t, tmp_path).data)
    assert ids(roles.labeled) == ["a0", "b0"] and ids(roles.unlabeled) == ["a1", "a2", "b1", "b2"]
    assert ids(roles.val) == ["c0", "c1", "c2", "c3"]
    # Mixed domain: few labels from one centre, unlabeled data from every centre.
    t["data"]["labeled"] = {"site": "a", "first": 1}
    t["data"]["unlabeled"] = {"split": "train"}
    roles = assign_roles(refs(), make_config(t, tmp_path).data)
    assert ids(roles.unlabeled) == ["a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"] and roles.sites == ["a", "b", "c"]


def test_empty_or_unlabeled_selection_is_refused(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["data"]["labeled"] = {"site": "z"}
    with pytest.raises(
        ConfigError, match=r"\[data.labeled\] selects no case of cohort.csv \(sites: a, b, c; splits: train, val\)"
    ):
        assign_roles(refs(), make_config(t, tmp_path).data)
    cases = refs()
    cases[0] = CaseRef("a0", "a", "train", "a0.nii", None)
    with pytest.raises(ConfigError, match=r"\[data.labeled\] case a0 has no label map"):
        assign_roles(cases, make_config(tiny_table, tmp_path).data)


def test_prepare_resamples_normalises_and_caches(tiny_table: dict, tmp_path: Path, cohort_csv: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["data"]["spacing"] = [2.0, 2.0, 3.0]
    t["data"]["normalization"] = {"method": "zscore", "clip": [1.0, 99.0]}
    cfg = make_config(t, tmp_path).data
    cases = cohort_cases(cfg)
    assert len(cases) == 12 and cases[0].site == "a"
    calls: list[tuple[int, int]] = []
    case = prepare_cases(cases[:1], cfg, 2, progress=lambda d, n, m: calls.append((d, n)))[0]
    assert calls == [(1, 1)]
    # (24, 40, 40) voxels of 1.5 x 1 x 1 mm -> 3 x 2 x 2 mm: (12, 20, 20), same physical centre.
    assert case.raw.shape == (12, 20, 20) and case.geometry.spacing == (2.0, 2.0, 3.0)
    assert case.source_label.shape == SHAPE and case.source_geometry.spacing == (1.0, 1.0, 1.5)
    # Network input = exactly what inference feeds the network for this scan and model.
    meta = ModelMeta(
        name="m",
        architecture="vnet",
        arch_args={},
        classes=["background", "blob"],
        normalization=Normalization(clip=(1.0, 99.0)).to_dict(),
        spacing=[2.0, 2.0, 3.0],
    )
    expected, grid = model_input(read_volume(cases[0].image), meta)
    assert grid.same_grid(case.geometry)
    np.testing.assert_allclose(case.x, expected, rtol=1e-5, atol=1e-5)
    assert abs(case.x.mean()) < 0.05 and 0.8 < case.x.std() < 1.0  # statistics of the finer source grid
    # Labels averaged over 2x2x2 blocks: the coarse foreground fraction matches the fine one.
    assert abs(case.label.mean() - case.source_label.mean()) < 0.02
    # A copied cache works without the source volumes or the manifest.
    shutil.rmtree(cohort_csv.parent)
    again_cases = cohort_cases(cfg)
    again = prepare_cases(again_cases[:1], cfg, 2)[0]
    np.testing.assert_array_equal(again.raw, case.raw)
    np.testing.assert_array_equal(again.label, case.label)
    assert again.shift == case.shift and again.scale == case.scale
    with pytest.raises(ConfigError, match="is missing and not in the cache"):
        prepare_cases(again_cases[1:2], cfg, 2)


def test_label_values_must_fit_classes(tiny_table: dict, tmp_path: Path) -> None:
    t = copy.deepcopy(tiny_table)
    t["data"]["classes"] = ["background"] + ["x"]
    cfg = make_config(t, tmp_path).data
    case = prepare_cases(cohort_cases(cfg)[:1], cfg, 2)[0]
    assert set(np.unique(case.label)) == {0, 1}
    t["data"]["label_map"] = {"1": 0}  # map the blob to background: no foreground left
    cfg = make_config(t, tmp_path).data
    assert prepare_cases(cohort_cases(cfg)[:1], cfg, 2)[0].label.max() == 0


def sampler(tiny_table: dict, tmp_path: Path, rank: int = 0, world: int = 1, fg: float = 0.5) -> PatchSampler:
    t = copy.deepcopy(tiny_table)
    t["data"]["unlabeled"] = {"site": "b"}
    t["data"]["foreground_fraction"] = fg
    cfg = make_config(t, tmp_path)
    roles = assign_roles(cohort_cases(cfg.data), cfg.data)
    lab = prepare_cases(roles.labeled, cfg.data, 2)
    unl = prepare_cases(roles.unlabeled, cfg.data, 2)
    return PatchSampler(lab, unl, cfg.data, 2, 3, seed=5, sites=roles.sites, rank=rank, world=world)


def test_batches_are_reproducible_and_consistent(tiny_table: dict, tmp_path: Path) -> None:
    s = sampler(tiny_table, tmp_path)
    b1, b2, other = s.batch(7), s.batch(7), s.batch(8)
    assert b1["x_l"].shape == (2, 1, 16, 32, 32) and b1["y_l"].shape == (2, 16, 32, 32)
    assert b1["x_u"].shape == (3, 1, 16, 32, 32) and "y_u" not in b1
    for k in b1:
        assert (b1[k] == b2[k]).all(), k
    assert not (b1["x_l"] == other["x_l"]).all()
    # x = (raw - shift) / scale with each patch's own case statistics.
    st = b1["stats_l"]
    assert (b1["x_l"] - (b1["raw_l"] - st[:, 0, None, None, None, None]) / st[:, 1, None, None, None, None]).abs().max() < 1e-5
    # Augmented image and label stay aligned: the blob is bright, so labels pick out high intensities.
    raw, y = b1["raw_l"][:, 0], b1["y_l"]
    for i in range(2):
        if y[i].any() and (y[i] == 0).any():
            assert raw[i][y[i] == 1].mean() > raw[i][y[i] == 0].mean() + 40
    assert set(b1["site_l"].tolist()) == {0} and set(b1["site_u"].tolist()) == {1}


def test_foreground_oversampling(tiny_table: dict, tmp_path: Path) -> None:
    always = sampler(tiny_table, tmp_path, fg=1.0)
    assert all(always.batch(i)["y_l"][j].any() for i in range(10) for j in range(2))


def test_ranks_share_the_global_case_order(tiny_table: dict, tmp_path: Path) -> None:
    single = sampler(tiny_table, tmp_path)
    r0, r1 = sampler(tiny_table, tmp_path, 0, 2), sampler(tiny_table, tmp_path, 1, 2)
    # Rank r of 2 takes the r-th slice of each global batch: together they see the cases of two
    # consecutive single-process batches, each case once per pass.
    n = len(single.labeled.raw)
    seen = single._case_indices(n, 0, 2, 0) + single._case_indices(n, 0, 2, 1)
    assert r0._case_indices(n, 0, 2, 0) + r1._case_indices(n, 0, 2, 0) == seen
    assert not (r0.batch(0)["raw_l"] == r1.batch(0)["raw_l"]).all()
