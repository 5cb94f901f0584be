"""benchmarks/hitl_report.py: a mixed-axes run made without k = 1 takes it from its axial twin."""

from __future__ import annotations

import importlib.util

from synthetic import REPO


def load_report():
    spec = importlib.util.spec_from_file_location("hitl_report", REPO / "benchmarks" / "hitl_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(axes: str, ks: list[int], gain: float, shift: str = "gamma") -> dict:
    """A bench_hitl result on two cases that start at 0.88: every round gains `gain` points."""
    rounds = {
        str(k): {"gain_points": gain + k, "dice_corrections_only": 0.885, "dice_after_corrections_kept": 0.88 + (gain + k) / 100}
        for k in ks
    }
    cases = {c: {"dice_before": 0.88, "rounds": rounds} for c in ("A", "B")}
    reach = {
        c: {
            "corrections_only": None,
            "finetuned": next((k for k in ks if rounds[str(k)]["dice_after_corrections_kept"] >= 0.9), None),
        }
        for c in cases
    }
    return {"model": "m", "shift": shift, "severity": 0.7, "finetune": {"iterations": 9}, "axes": axes, "ks": ks,
            "cases": cases, "summary": {"slices_to_reach_0.90": reach}}  # fmt: skip


def test_mixed_run_without_k1_shows_the_axial_k1_and_counts_it_for_reaching_090() -> None:
    report = load_report()
    runs = {
        "gamma-z": run("z", [1, 3, 5], 1.5),
        "gamma-mixed": run("mixed", [3, 5], -5.0),
        "bias-mixed": run("mixed", [3, 5], 3.0, "bias"),
    }
    row = report.summary_row("gamma-mixed", runs["gamma-mixed"], [1, 3, 5], runs)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "+2.50 [+2.50, +2.50] (axial)" and cells[2] == "-2.00 [-2.00, -2.00]"
    assert cells[4] == "2/2 (0/2)"  # only the axial k = 1 reaches it
    other = report.summary_row("bias-mixed", runs["bias-mixed"], [1, 3, 5], runs)  # no axial twin: nothing borrowed
    assert [c.strip() for c in other.strip("|").split("|")][1] == "–"


def test_mixed_axes_are_compared_with_their_axial_twin_case_by_case() -> None:
    report = load_report()
    runs = {
        "gamma-z": run("z", [1, 3, 5], 1.5),
        "gamma-mixed": run("mixed", [3, 5], 3.0),
        "bias-mixed": run("mixed", [3, 5], 3.0, "bias"),
    }
    runs["gamma-mixed"]["cases"]["B"] = {
        **runs["gamma-mixed"]["cases"]["B"],
        "rounds": {"3": {"gain_points": 2.0}, "5": {"gain_points": 8.0}},
    }
    rows = report.axes_table(runs).splitlines()[2:]
    assert rows == ["| gamma | 3 | -0.50 [-2.50, +1.50] | 1/2 |", "| gamma | 5 | +1.50 [+1.50, +1.50] | 2/2 |"]  # bias: no twin
