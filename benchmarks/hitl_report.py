"""Markdown tables from `bench_hitl.py` JSON files: per case, then one summary row per file.

    python benchmarks/hitl_report.py benchmarks/hitl/grid/*.json

Per case: Dice before, gain at each k (points, re-segmentation without the corrected slices), the
corrections alone, the change on the next case unshifted (the original centre) and through the
same shift (the centre the round is tied to). Summary: mean gain with its bootstrap 95 % interval
per k, slices needed to reach 0.90, and the worst change on other scans. Runs with `--mix-grid`
also get a table per WiSE-FT mix: the gain at k = 3 and the change on every other case. A
mixed-axes run made without k = 1 shows the axial run's k = 1 (one slice is the most uncertain
axial one either way), marked "(axial)"; mixed-axes runs are compared with their axial twin per case.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_report import bootstrap_ci  # noqa: E402


def load(path: Path) -> dict[str, Any]:
    """A bench_hitl result (the JSON object that ends its output)."""
    text = path.read_text()
    return json.loads(text[text.index("{") :])


def case_table(run: dict[str, Any]) -> str:
    """One row per case of one run."""
    ks = [str(k) for k in run["ks"]]
    head = [
        "case",
        "Dice before",
        *[f"gain k={k}" for k in ks],
        f"corrections only k={ks[-1]}",
        "other scan, clean",
        "other scan, same shift",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for case, r in run["cases"].items():
        gains = [f"{r['rounds'][k]['gain_points']:+.2f}" for k in ks]
        only = 100 * (r["rounds"][ks[-1]]["dice_corrections_only"] - r["dice_before"])
        other = r.get("forgetting_k3", {}).get("change_points")
        same = r.get("same_centre_k3", {}).get("change_points")
        cells = [case[:4], f"{r['dice_before']:.3f}", *gains, f"{only:+.2f}", _pts(other), _pts(same)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_cell(run: dict[str, Any], k: int) -> str:
    """Mean gain at `k` with its bootstrap 95 % interval."""
    g = np.array([r["rounds"][str(k)]["gain_points"] for r in run["cases"].values()])
    lo, hi = bootstrap_ci(g)
    return f"{g.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]"


def axial_twin(run: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The axial-slices run of the same model, shift and cases as a mixed-axes `run`, if any."""
    for other in runs.values():
        if (
            other["axes"] == "z"
            and run["axes"] == "mixed"
            and all(other[key] == run[key] for key in ("model", "shift", "severity", "finetune"))
            and set(other["cases"]) == set(run["cases"])
        ):
            return other
    return None


def summary_row(name: str, run: dict[str, Any], ks: list[int], runs: dict[str, dict[str, Any]]) -> str:
    """Mean gains [95 % CI] per k, slices to reach 0.90, mean and worst change on other scans."""
    cells = [name]
    twin = axial_twin(run, runs)
    for k in ks:
        if k in run["ks"]:
            cells.append(gain_cell(run, k))
        elif k == 1 and twin is not None and 1 in twin["ks"]:
            cells.append(gain_cell(twin, 1) + " (axial)")
        else:
            cells.append("–")
    reach = {case: dict(v) for case, v in run["summary"].get("slices_to_reach_0.90", {}).items()}
    if twin is not None and 1 not in run["ks"] and 1 in twin["ks"]:  # one slice reaching it counts too
        for case, v in reach.items():
            k1 = twin["cases"][case]["rounds"]["1"]
            for name, key in (("corrections_only", "dice_corrections_only"), ("finetuned", "dice_after_corrections_kept")):
                if k1[key] >= 0.90:
                    v[name] = 1
    tuned = [v["finetuned"] for v in reach.values()]
    plain = [v["corrections_only"] for v in reach.values()]
    n_ok = lambda values: sum(v is not None and v <= 5 for v in values)  # noqa: E731
    cells.append(f"{n_ok(tuned)}/{len(tuned)} ({n_ok(plain)}/{len(plain)})" if tuned else "–")
    for key in ("forgetting_k3", "same_centre_k3"):
        c = [r[key]["change_points"] for r in run["cases"].values() if key in r]
        cells.append(f"{np.mean(c):+.2f} (worst {min(c):+.2f})" if c else "–")
    return "| " + " | ".join(cells) + " |"


def mix_table(run: dict[str, Any]) -> str:
    """Per WiSE-FT mix of the k = 3 round: mean gain [95 % CI] and worst case; the change on every
    other case clean and through the same shift (mean, worst, pairs below −1 point)."""
    head = ["mix", "gain k=3", "worst gain", "other scans, clean", "other scans, same shift"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    grids = [r["mix_grid_k3"] for r in run["cases"].values()]
    for mix in grids[0]:
        g = np.array([grid[mix]["gain_points"] for grid in grids])
        lo, hi = bootstrap_ci(g)
        cells = [mix, f"{g.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{g.min():+.2f}"]
        for key in ("clean_changes", "same_centre_changes"):
            c = np.concatenate([grid[mix][key] for grid in grids])
            cells.append(f"{c.mean():+.2f} (worst {c.min():+.2f}; {int((c < -1).sum())}/{c.size} below −1)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def axes_table(runs: dict[str, dict[str, Any]]) -> str:
    """Mixed axes against axial slices, paired per case, for each mixed run with an axial twin:
    mean difference in gain [95 % CI] and cases where mixed axes gained more, at each shared k > 1."""
    lines = ["| shift | k | mixed − axial, points [95 % CI] | cases won |", "|---|---|---|---|"]
    for run in runs.values():
        twin = axial_twin(run, runs)
        if twin is None:
            continue
        for k in sorted(set(run["ks"]) & set(twin["ks"]) - {1}):
            d = np.array([run["cases"][c]["rounds"][str(k)]["gain_points"] - twin["cases"][c]["rounds"][str(k)]["gain_points"]
                          for c in run["cases"]])  # fmt: skip
            lo, hi = bootstrap_ci(d)
            lines.append(f"| {run['shift']} | {k} | {d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] | {int((d > 0).sum())}/{d.size} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    runs = {p.stem: load(p) for p in args.files}
    ks = sorted({k for run in runs.values() for k in run["ks"]})
    head = [
        "run",
        *[f"gain k={k}" for k in ks],
        "reach 0.90 with ≤ 5 slices (without fine-tuning)",
        "other scan, clean (k=3)",
        "other scan, same shift (k=3)",
    ]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for name, run in runs.items():
        print(summary_row(name, run, ks, runs))
    paired = axes_table(runs)
    if paired:
        print(f"\nMixed axes against axial slices, the same cases paired:\n\n{paired}")
    for name, run in runs.items():
        print(f"\n{name} ({run['model']}, {run['shift']}, axes {run['axes']}, {run['finetune']}):\n")
        print(case_table(run))
        if all("mix_grid_k3" in r for r in run["cases"].values()):
            print(f"\nWiSE-FT mixes of the k = 3 round ({name}):\n")
            print(mix_table(run))
    return 0


def _pts(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


if __name__ == "__main__":
    sys.exit(main())
