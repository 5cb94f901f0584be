"""benchmarks/compare_report.py: seed averaging, paired differences and their bootstrap interval."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from synthetic import REPO


def load_report():
    spec = importlib.util.spec_from_file_location("compare_report", REPO / "benchmarks" / "compare_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(dice: dict[str, float]) -> dict:
    """A cached run's scores: the same per-case Dice under every condition."""
    cond = {
        c: {case: {"dice": d, "jaccard": d / (2 - d), "hd95": 5.0, "asd": 1.0} for case, d in dice.items()}
        for c in load_report().CONDITIONS
    }
    return {"scores": cond}


def test_paired_differences_average_seeds_per_case_and_bracket_the_mean() -> None:
    report = load_report()
    cases = [f"c{i}" for i in range(8)]
    base = {c: 0.80 + 0.01 * i for i, c in enumerate(cases)}
    better = {0: run({c: v + 0.03 for c, v in base.items()}), 1: run({c: v + 0.01 for c, v in base.items()})}
    runs = {"sup": {0: run(base), 1: run(base)}, "new": better}
    summary = report.summarise(runs, ("sup",))
    clean = summary["new"]["conditions"]["clean"]
    assert clean["dice"] == pytest.approx(np.mean(list(base.values())) + 0.02)
    assert clean["per_seed"][0]["dice"] == pytest.approx(np.mean(list(base.values())) + 0.03)
    diff = clean["vs_sup"]
    assert diff["mean"] == pytest.approx(2.0) and diff["wins"] == 8 and diff["cases"] == 8
    assert diff["ci95"] == pytest.approx([2.0, 2.0])  # the same gain on every case: no spread
    assert "vs_sup" not in summary["sup"]["conditions"]["clean"]


def test_bootstrap_interval_covers_the_mean_and_widens_with_spread() -> None:
    report = load_report()
    rng = np.random.default_rng(0)
    narrow = report.bootstrap_ci(1.0 + 0.1 * rng.standard_normal(8))
    wide = report.bootstrap_ci(1.0 + 2.0 * rng.standard_normal(8))
    assert narrow[0] < 1.1 and narrow[1] > 0.9 and (wide[1] - wide[0]) > 5 * (narrow[1] - narrow[0])


def test_kept_scores_stand_in_for_run_folders_that_are_gone(tmp_path) -> None:
    report = load_report()
    scores = tmp_path / "scores"
    scores.mkdir()
    kept = run({"c0": 0.9, "c1": 0.8}) | {"version": report.EVAL_VERSION, "model_sha256": "0" * 64}
    (scores / "sup-s0.json").write_text(json.dumps(kept))
    (scores / "mt-s1.json").write_text(json.dumps(kept | {"version": report.EVAL_VERSION - 1}))
    (scores / "notes.json").write_text("{}")
    runs = report.collect(tmp_path / "missing-runs", tmp_path, "cpu", scores)
    assert list(runs) == ["sup"] and list(runs["sup"]) == [0]  # an older format is not mixed in
    assert runs["sup"][0]["scores"]["clean"]["c1"]["dice"] == 0.8


def test_pooled_difference_averages_each_case_over_the_conditions_first() -> None:
    report = load_report()
    cases = [f"c{i}" for i in range(8)]
    base = {c: 0.80 + 0.01 * i for i, c in enumerate(cases)}
    new = run({c: v + 0.02 for c, v in base.items()})
    for case in cases:  # clean: a loss of 2 points on every case, the 8 shifted conditions a gain of 2
        new["scores"]["clean"][case]["dice"] = base[case] - 0.02
    summary = report.summarise({"sup": {0: run(base)}, "midss": {0: new}}, ("sup",))
    pooled = summary["midss"]["pooled"]
    n = len(report.CONDITIONS)
    assert pooled["all conditions"]["vs_sup"]["mean"] == pytest.approx(round(2.0 * (n - 2) / n, 2))
    assert pooled["shifted conditions"]["vs_sup"]["mean"] == pytest.approx(2.0)
    assert "| shifted conditions | +2.00 [+2.00, +2.00] 8/8 |" in report.markdown(summary)
