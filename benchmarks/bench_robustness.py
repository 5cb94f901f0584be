"""Robustness to simulated centre shifts: Dice and HD95 of models on clean cases and under each
shift kind at fixed severities. Every model sees the same shifted volumes (same seeds), so the
ratio of shifted to clean Dice compares methods within one run.

    python benchmarks/bench_robustness.py MODEL.safetensors [MODEL ...] --data ../shared/data/la/val
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_freqseg.evaluation import CaseResult, evaluate_arrays, model_predictor, summarize
from napari_freqseg.io import Volume, load_cohort, read_volume
from napari_freqseg.shift import KINDS, apply_shift

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "la" / "val"
DEFAULT_SEVERITIES = (0.5, 1.0)


def conditions(kinds: list[str], severities: list[float]) -> list[tuple[str, float]]:
    """('clean', 0) first, then every kind at every severity."""
    return [("clean", 0.0)] + [(k, s) for k in kinds for s in severities]


def run(
    models: list[Path], data: Path, kinds: list[str], severities: list[float], n_cases: int | None, seed: int, device: str
) -> dict[str, Any]:
    """Dice/HD95 per model and condition, averaged over the labeled cases of `data`."""
    cases = [c for c in load_cohort(data).cases if c.labeled][:n_cases]
    if not cases:
        raise SystemExit(f"{data}: no labeled cases")
    predictors = {m.stem: model_predictor(m, device=device)[0] for m in models}
    conds = conditions(kinds, severities)
    results: dict[str, dict[str, list[CaseResult]]] = {name: {} for name in predictors}
    seconds = {name: 0.0 for name in predictors}
    for i, case in enumerate(cases):
        image, truth = read_volume(case.image), read_volume(case.label)
        for kind, severity in conds:
            array = (
                image.array if kind == "clean" else apply_shift(image.array, kind, severity, seed + i, image.geometry.scale_zyx)
            )
            shifted = Volume(array=array, geometry=image.geometry, source=str(case.image))
            for name, predict in predictors.items():
                start = time.perf_counter()
                pred = predict(shifted)
                seconds[name] += time.perf_counter() - start
                metrics = evaluate_arrays(pred, truth.array, image.geometry, case=case.case_id)
                results[name].setdefault(_key(kind, severity), []).append(CaseResult(case.case_id, case.site, metrics))
        print(f"{i + 1}/{len(cases)} {case.case_id}", file=sys.stderr)
    report: dict[str, Any] = {
        "data": os.path.relpath(data, REPO),
        "cases": [c.case_id for c in cases],
        "kinds": kinds,
        "severities": severities,
        "seed": seed,
        "models": {},
    }
    for name, per_cond in results.items():
        rows = {key: _condition_stats(items) for key, items in per_cond.items()}
        clean = rows["clean"]["dice"]
        for row in rows.values():
            row["dice_ratio"] = round(row["dice"] / clean, 4) if clean else None
        per_volume = seconds[name] / (len(cases) * len(conds))
        report["models"][name] = {"conditions": rows, "predict_seconds_per_volume": round(per_volume, 3)}
    return report


def _key(kind: str, severity: float) -> str:
    return "clean" if kind == "clean" else f"{kind}@{severity:g}"


def _condition_stats(items: list[CaseResult]) -> dict[str, Any]:
    """Foreground-class average of the per-class overall means (Dice, HD95 with its inf count)."""
    overall = summarize(items)["overall"]
    dice = [s["dice"]["mean"] for s in overall.values()]
    hd = [s["hd95"]["mean"] for s in overall.values() if s["hd95"]["mean"] is not None]
    return {
        "dice": round(float(np.mean(dice)), 4),
        "dice_std": round(float(np.mean([s["dice"]["std"] for s in overall.values()])), 4),
        "hd95": round(float(np.mean(hd)), 3) if hd else None,
        "hd95_n_inf": int(sum(s["hd95"]["n_inf"] for s in overall.values())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model files (.safetensors)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="cohort folder or manifest (default: ../shared/data/la/val)"
    )
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--severities", nargs="+", type=float, default=list(DEFAULT_SEVERITIES))
    parser.add_argument("--cases", type=int, default=None, help="only the first N labeled cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    report = run(args.models, args.data, args.kinds, args.severities, args.cases, args.seed, args.device)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
