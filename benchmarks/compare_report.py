"""Score the controlled LA comparison: last checkpoints on la/val, clean and under centre shifts.

Every finished run RUNS/ROW-sSEED (its last.safetensors: the last iteration, never a best-on-val
choice) is scored on the labeled cases of la/val, clean and under each condition below (shift
seeds fixed per case, so every model sees the same volumes). Per-case scores are kept in
benchmarks/compare/scores/ROW-sSEED.json (committed, keyed by the model's SHA-256), so the report
grows as runs finish and can be rebuilt after the run folders are gone. The report gives per row and condition Dice,
Jaccard, HD95 and ASD (mean over seeds, and per seed), and paired per-case Dice differences
(each case's Dice averaged over seeds) against the reference rows with a bootstrap 95 % interval.

    python benchmarks/compare_report.py --runs runs/compare [--markdown]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_freqseg.evaluation import evaluate_arrays, model_predictor
from napari_freqseg.io import Volume, load_cohort, read_volume
from napari_freqseg.shift import apply_shift

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "la" / "val"
#: condition name -> shifts applied in turn (kind, severity); seeds: 1000 * case index + position.
CONDITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "clean": (),
    "style": (("style", 1.0),),
    "bias": (("bias", 1.0),),
    "gamma": (("gamma", 1.0),),
    "thick": (("thick", 1.0),),
    "noise": (("noise", 1.0),),
    "gamma+bias": (("gamma", 0.7), ("bias", 0.7)),
    "style+noise": (("style", 0.7), ("noise", 0.7)),
    "thick+noise": (("thick", 0.7), ("noise", 0.7)),
}
METRICS = ("dice", "jaccard", "hd95", "asd")
ROWS = ("sup", "mt", "freq", "bfa", "freq_bfa", "midss", "sup_all")
EVAL_VERSION = 2
#: Where the per-run scores are kept (committed): the evidence behind RESULTS.md.
SCORES = REPO / "benchmarks" / "compare" / "scores"


def shifted(image: Volume, condition: str, case_index: int) -> np.ndarray:
    """The image array under `condition`, seeded by the case's position in the split."""
    array = image.array
    for j, (kind, severity) in enumerate(CONDITIONS[condition]):
        array = apply_shift(array, kind, severity, 1000 * case_index + j, image.geometry.scale_zyx)
    return array


def score_run(run: Path, data: Path, device: str, scores_dir: Path = SCORES) -> dict[str, Any]:
    """Per-case metrics of run/last.safetensors under every condition (kept in scores_dir/RUN.json)."""
    cache = scores_dir / f"{run.name}.json"
    model = run / "last.safetensors"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if (
            cached.get("version") == EVAL_VERSION
            and cached.get("model_sha256") == digest
            and set(cached["scores"]) == set(CONDITIONS)
        ):
            return cached
    predict, _ = model_predictor(model, device=device)
    cases = [c for c in load_cohort(data).cases if c.labeled]
    scores: dict[str, dict[str, dict[str, float | None]]] = {k: {} for k in CONDITIONS}
    start = time.perf_counter()
    for i, case in enumerate(cases):
        image, truth = read_volume(case.image), read_volume(case.label)
        for condition in CONDITIONS:
            volume = Volume(array=shifted(image, condition, i), geometry=image.geometry, source=str(case.image))
            metrics = evaluate_arrays(predict(volume), truth.array, image.geometry, classes=[1], case=case.case_id)[1]
            scores[condition][case.case_id] = metrics.to_dict()
        print(f"{run.name}: {i + 1}/{len(cases)} {case.case_id}", file=sys.stderr, flush=True)
    result = {
        "version": EVAL_VERSION,
        "model_sha256": digest,
        "data": os.path.relpath(data, REPO),
        "seconds": round(time.perf_counter() - start, 1),
        "scores": scores,
    }
    scores_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    tmp.replace(cache)
    return result


def collect(runs_dir: Path, data: Path, device: str, scores_dir: Path = SCORES) -> dict[str, dict[int, dict[str, Any]]]:
    """Scores per row and seed: every finished run in runs_dir (scored when new), plus the kept
    scores of runs whose folders are gone."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    names = {f.name for f in runs_dir.glob("*-s*") if (f / "last.safetensors").is_file()} if runs_dir.is_dir() else set()
    names |= {f.stem for f in scores_dir.glob("*-s*.json")} if scores_dir.is_dir() else set()
    for name in sorted(names):
        m = re.fullmatch(r"(.+)-s(\d+)", name)
        if not m:
            continue
        folder = runs_dir / name
        if (folder / "last.safetensors").is_file():
            result = score_run(folder, data, device, scores_dir)
        else:
            result = json.loads((scores_dir / f"{name}.json").read_text())
            if result.get("version") != EVAL_VERSION:
                continue
        runs.setdefault(m.group(1), {})[int(m.group(2))] = result
    return runs


def bootstrap_ci(diffs: np.ndarray, n: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of paired differences (cases resampled)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n, len(diffs)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarise(runs: dict[str, dict[int, dict[str, Any]]], references: tuple[str, ...]) -> dict[str, Any]:
    """Per row and condition: metrics (mean over seeds of the per-seed case means, and per seed),
    and paired per-case Dice differences against each reference row present."""
    out: dict[str, Any] = {}
    for row, seeds in runs.items():
        out[row] = {"seeds": sorted(seeds), "conditions": {}}
        for condition in CONDITIONS:
            per_seed = {s: {m: _mean([c[m] for c in r["scores"][condition].values()]) for m in METRICS} for s, r in seeds.items()}
            entry: dict[str, Any] = {m: _mean([v[m] for v in per_seed.values()]) for m in METRICS}
            entry["per_seed"] = per_seed
            for ref in references:
                if ref == row or ref not in runs:
                    continue
                diff = paired_dice(runs[row], runs[ref], condition)
                if diff is not None:
                    entry[f"vs_{ref}"] = diff
            out[row]["conditions"][condition] = entry
        out[row]["pooled"] = {
            pool: {f"vs_{ref}": paired_dice(seeds, runs[ref], conditions) for ref in references if ref != row and ref in runs}
            for pool, conditions in POOLS.items()
        }
    return out


def case_dice(seeds: dict[int, dict[str, Any]], condition: str | tuple[str, ...]) -> dict[str, float]:
    """Each case's Dice averaged over the seeds (and over the conditions when given several)."""
    conditions = (condition,) if isinstance(condition, str) else condition
    cases = sorted(next(iter(seeds.values()))["scores"][conditions[0]])
    return {c: float(np.mean([r["scores"][k][c]["dice"] for r in seeds.values() for k in conditions])) for c in cases}


#: Pooled conditions for the "averaged over conditions" comparison: all of them, and the shifted ones.
POOLS: dict[str, tuple[str, ...]] = {
    "all conditions": tuple(CONDITIONS),
    "shifted conditions": tuple(k for k in CONDITIONS if k != "clean"),
}


def paired_dice(
    a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], condition: str | tuple[str, ...]
) -> dict[str, Any] | None:
    """Mean per-case Dice difference a - b (points), its bootstrap 95 % interval and the wins."""
    da, db = case_dice(a, condition), case_dice(b, condition)
    cases = sorted(set(da) & set(db))
    if not cases:
        return None
    d = 100 * np.array([da[c] - db[c] for c in cases])
    lo, hi = bootstrap_ci(d)
    return {
        "mean": round(float(d.mean()), 2),
        "ci95": [round(lo, 2), round(hi, 2)],
        "wins": int((d > 0).sum()),
        "cases": len(cases),
    }


def markdown(summary: dict[str, Any]) -> str:
    """Tables: clean metrics per row; Dice per condition; paired differences."""
    rows = [r for r in ROWS if r in summary]
    lines = [
        "| row | seeds | Dice | Jaccard | HD95 mm | ASD mm | Dice per seed | vs sup (points, 95 % CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = summary[r]["conditions"]["clean"]
        per = ", ".join(f"{v['dice']:.3f}" for v in c["per_seed"].values())
        vs = _fmt_diff(c.get("vs_sup"))
        lines.append(
            f"| {r} | {len(summary[r]['seeds'])} | {c['dice']:.3f} | {c['jaccard']:.3f} | {c['hd95']:.2f} | {c['asd']:.2f} | {per} | {vs} |"
        )
    lines += ["", "| condition | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for cond in CONDITIONS:
        lines.append(f"| {cond} | " + " | ".join(f"{summary[r]['conditions'][cond]['dice']:.3f}" for r in rows) + " |")
    for ref in ("sup", "mt"):
        if ref not in summary:
            continue
        others = [r for r in rows if r != ref]
        lines += [
            "",
            f"Paired per-case Dice difference against {ref} (points; mean [95 % CI], cases won):",
            "",
            "| condition | " + " | ".join(others) + " |",
            "|---" * (len(others) + 1) + "|",
        ]
        for cond in CONDITIONS:
            lines.append(
                f"| {cond} | " + " | ".join(_fmt_diff(summary[r]["conditions"][cond].get(f"vs_{ref}")) for r in others) + " |"
            )
    if "sup" in summary:
        others = [r for r in rows if r != "sup"]
        lines += [
            "",
            "Averaged over conditions (each case's Dice averaged over the conditions and seeds), paired against sup:",
            "",
            "| pool | " + " | ".join(others) + " |",
            "|---" * (len(others) + 1) + "|",
        ]
        for pool in POOLS:
            lines.append(f"| {pool} | " + " | ".join(_fmt_diff(summary[r]["pooled"][pool].get("vs_sup")) for r in others) + " |")
    return "\n".join(lines)


def _fmt_diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    return f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] {d['wins']}/{d['cases']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables after the JSON")
    args = parser.parse_args()
    runs = collect(args.runs, args.data, args.device)
    if not runs:
        raise SystemExit(f"{args.runs}: no finished run (ROW-sSEED/last.safetensors) and no kept scores")
    summary = summarise(runs, ("sup", "mt"))
    json.dump(
        {
            "data": os.path.relpath(args.data, REPO),
            "conditions": {k: [list(s) for s in v] for k, v in CONDITIONS.items()},
            "rows": summary,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    if args.markdown:
        print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
