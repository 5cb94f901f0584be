"""Does the human-in-the-loop round help? Dice before/after fine-tuning on k corrected slices. JSON.

For each LA val case: the scan goes through the centre-shift simulator (default gamma then bias,
severity 0.7, seeds from the case index); the bundled model segments it with an uncertainty map;
a simulated user corrects the k most uncertain axial slices (`correction.rank_slices`, minimum
gap 3) with the ground truth; the model is fine-tuned on them for a fixed CPU budget and segments
the scan again. Forgetting: the k = 3 model of case i segments case i+1 unshifted (the original
centre), against the original model's Dice there; same centre: it segments case i+1 through the
same shift (the centre the tuned model is tied to), against the original model on that scan.
Every number is measured in this one process.

    python benchmarks/bench_hitl.py --cases 2 --seconds 60

With `--gui` (needs a display: run under Xvfb) it measures instead the longest GUI stall while the
Correct widget fine-tunes in a real viewer (LA sample, bundled model, three slices corrected from
the sample's label), and with `--screenshots DIR` saves a picture of each stage of the loop:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_hitl.py --gui --screenshots docs/images
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_report import bootstrap_ci  # noqa: E402

from napari_freqseg.correction import CorrectionRecord, format_slice_spec, rank_slices, slice_scores  # noqa: E402
from napari_freqseg.inference import predict_volume  # noqa: E402
from napari_freqseg.io import Volume, load_cohort, read_volume  # noqa: E402
from napari_freqseg.metrics import dice  # noqa: E402
from napari_freqseg.models.modelfile import ModelMeta, load_model  # noqa: E402
from napari_freqseg.models.registry import PREFERRED, find_model  # noqa: E402
from napari_freqseg.shift import apply_shift  # noqa: E402
from napari_freqseg.training.finetune import FinetuneOptions, finetune, interpolate_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "la" / "val"
DEFAULT_TRAIN = REPO.parent / "shared" / "data" / "la" / "train"


def shifted(image: Volume, kinds: list[str], severity: float, seed: int) -> Volume:
    """`image` through each shift kind in turn (seed, seed + 1, ...), on the same grid."""
    array = image.array
    for j, kind in enumerate(kinds):
        array = apply_shift(array, kind, severity, seed + j, image.geometry.scale_zyx)
    return Volume(array=array, geometry=image.geometry, source=image.source)


def replay_cases(meta: ModelMeta, folder: Path, n: int) -> list[tuple[Volume, np.ndarray]]:
    """The first `n` labeled training cases the model file names, read from `folder/<case>/`."""
    ids = list(meta.training.get("labeled_cases", []))[:n]
    return [(read_volume(folder / i / "image.nii.gz"), read_volume(folder / i / "label.nii.gz").array) for i in ids]


def segment(network: torch.nn.Module, meta: ModelMeta, volume: Volume, overlap: float, uncertainty: bool = False) -> Any:
    return predict_volume(network, meta, volume, device="cpu", overlap=overlap, uncertainty="entropy" if uncertainty else None)


def pick_slices(ranked: dict[str, list[int]], k: int, axes: str) -> dict[str, list[int]]:
    """The simulated person's k slices: the k most uncertain axial ones ('z'), or ('mixed') the
    most uncertain of each axis in turn (axial, coronal, sagittal, axial, ...)."""
    if axes == "z":
        return {"z": ranked["z"][:k]}
    chosen: dict[str, list[int]] = {"z": [], "y": [], "x": []}
    for i in range(k):
        axis = "zyx"[i % 3]
        chosen[axis].append(ranked[axis][len(chosen[axis])])
    return {a: v for a, v in chosen.items() if v}


def run_case(
    network: torch.nn.Module, meta: ModelMeta, scan: Volume, truth: np.ndarray, ks: list[int], options: FinetuneOptions,
    overlap: float, replay: list[tuple[Volume, np.ndarray]], axes: str = "z", min_distance: int = 3,
) -> tuple[dict[str, Any], dict[int, torch.nn.Module]]:  # fmt: skip
    """Dice before and after one correction round per k on one (shifted) scan; the tuned networks."""
    t0 = time.monotonic()
    before = segment(network, meta, scan, overlap, uncertainty=True)
    seg_seconds = time.monotonic() - t0
    ranked = {a: rank_slices(slice_scores(before.uncertainty, axis=i), min_distance=min_distance) for i, a in enumerate("zyx")}
    out: dict[str, Any] = {"dice_before": round(dice(before.labels == 1, truth == 1), 4), "segment_seconds": round(seg_seconds, 1),
                           "ranked_slices": {a: r[: max(ks)] for a, r in ranked.items()}, "rounds": {}}  # fmt: skip
    tuned = {}
    for k in ks:
        chosen = pick_slices(ranked, k, axes)
        mask = CorrectionRecord.from_spec(truth.shape, format_slice_spec(chosen)).labeled_mask()
        labels = before.labels.copy()
        labels[mask] = truth[mask]  # the simulated user's corrections
        fixed = int(np.count_nonzero(before.labels[mask] != truth[mask]))
        result = finetune(network, meta, scan, labels, chosen, options, volume_name=scan.source, replay=replay)
        after = segment(result.network, meta, scan, overlap)
        kept = after.labels.copy()
        kept[mask] = truth[mask]  # what the Correct widget shows: re-segmentation, corrected slices kept
        corrected_only = before.labels.copy()
        corrected_only[mask] = truth[mask]  # the corrections alone, no fine-tuning
        out["rounds"][str(k)] = {
            "slices": chosen,
            "voxels_corrected": fixed,
            "dice_corrections_only": round(dice(corrected_only == 1, truth == 1), 4),
            "iterations": result.iterations,
            "finetune_seconds": result.meta.training["seconds"],
            "dice_after": round(dice(after.labels == 1, truth == 1), 4),
            "dice_after_corrections_kept": round(dice(kept == 1, truth == 1), 4),
            "last_loss": round(result.history[-1]["loss"], 4),
        }
        out["rounds"][str(k)]["gain_points"] = round(100 * (out["rounds"][str(k)]["dice_after"] - out["dice_before"]), 2)
        tuned[k] = result.network
    return out, tuned


def mix_grid(
    network: torch.nn.Module, tuned: torch.nn.Module, meta: ModelMeta, scan: Volume, truth: np.ndarray, before: float,
    others: list[tuple[Volume, Volume, np.ndarray, float, float]], mixes: list[float], overlap: float,
) -> dict[str, Any]:  # fmt: skip
    """Per WiSE-FT `mix` of the round's change: the gain on the corrected scan, and the change on each
    other scan (clean: the original centre; shifted like this one: its own centre). `others` holds
    (clean scan, shifted scan, truth, original model's Dice clean, shifted)."""
    out: dict[str, Any] = {}
    for mix in mixes:
        net = interpolate_weights(network, copy.deepcopy(tuned), mix)
        after = dice(segment(net, meta, scan, overlap).labels == 1, truth == 1)
        clean, same = [], []
        for clean_scan, other_scan, other_truth, base_clean, base_same in others:
            clean.append(
                round(100 * (dice(segment(net, meta, clean_scan, overlap).labels == 1, other_truth == 1) - base_clean), 2)
            )
            same.append(round(100 * (dice(segment(net, meta, other_scan, overlap).labels == 1, other_truth == 1) - base_same), 2))
        out[str(mix)] = {"gain_points": round(100 * (after - before), 2), "clean_changes": clean, "same_centre_changes": same}
    return out


def slices_to_reach(results: dict[str, Any], ks: list[int], target: float) -> dict[str, Any]:
    """Per case that starts below `target`: the fewest corrected slices (of `ks`) whose result reaches
    it, with the corrections alone and with fine-tuning (re-segmentation, corrections kept); None
    when no k of `ks` reaches it."""
    out: dict[str, Any] = {}
    for case, r in results.items():
        if r["dice_before"] >= target:
            continue
        out[case] = {
            name: next((k for k in sorted(ks) if r["rounds"][str(k)][key] >= target), None)
            for name, key in (("corrections_only", "dice_corrections_only"), ("finetuned", "dice_after_corrections_kept"))
        }
    return out


def resumed_cases(log: Path) -> dict[str, Any]:
    """Per-case results from an interrupted run's stderr (one JSON object per finished case)."""
    out: dict[str, Any] = {}
    for line in log.read_text().splitlines() if log.is_file() else ():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and len(record) == 1 and isinstance(next(iter(record.values())), dict):
            out.update(record)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of cases (default ../shared/data/la/val)")
    ap.add_argument("--cases", type=int, default=2, help="how many cases (default 2)")
    ap.add_argument(
        "--case-ids", nargs="+", default=[], metavar="ID", help="these cases of --data instead (e.g. the tuning cases)"
    )
    ap.add_argument("--model", default=PREFERRED, help=f"model name or file (default the bundled {PREFERRED})")
    ap.add_argument("--shift", default="gamma+bias", help="shift kinds joined by '+' (default gamma+bias)")
    ap.add_argument("--severity", type=float, default=0.7)
    ap.add_argument("--ks", default="1,3,5", help="numbers of corrected slices (default 1,3,5)")
    ap.add_argument("--seconds", type=float, default=60.0, help="fine-tuning budget per round (default 60)")
    ap.add_argument("--iterations", type=int, help="an iteration budget instead of --seconds (load-independent, for A/B runs)")
    ap.add_argument("--lr", type=float, default=FinetuneOptions.lr)
    ap.add_argument("--consistency", type=float, default=FinetuneOptions.consistency_weight)
    ap.add_argument("--precision", default=FinetuneOptions.precision, help="fine-tuning precision: fp32, bf16 or auto")
    ap.add_argument("--weak-weight", type=float, default=FinetuneOptions.weak_weight, help="interpolated weak labels (0: off)")
    ap.add_argument(
        "--patch", default="", help="fine-tuning patch z,y,x (default: finetune.default_patch, by the model's normalisation)"
    )
    ap.add_argument("--replay", type=int, default=0, metavar="N", help="replay the model's first N labeled training cases")
    ap.add_argument("--replay-every", type=int, default=4, metavar="N", help="with --replay: every N-th iteration (default 4)")
    ap.add_argument(
        "--train-data", default=str(DEFAULT_TRAIN), help="where --replay finds them (default ../shared/data/la/train)"
    )
    ap.add_argument("--axes", choices=("z", "mixed"), default="z", help="corrected slices: axial only, or one axis after another")
    ap.add_argument("--overlap", type=float, default=0.25, help="window overlap when segmenting (default 0.25)")
    ap.add_argument(
        "--min-distance",
        type=int,
        default=3,
        help="suggested slices at least this far apart (the Correct widget's gap, default 3)",
    )
    ap.add_argument("--mix", type=float, default=FinetuneOptions.mix, help="WiSE-FT share of the round's change (1: all)")
    ap.add_argument(
        "--mix-grid", default="", metavar="M,M", help="also score the k = 3 round at these WiSE-FT mixes, on every other case"
    )
    ap.add_argument(
        "--resume", metavar="LOG", help="the per-case lines (stderr) of an interrupted run with the same settings: not run again"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded 2-core machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gui", action="store_true", help="measure GUI stalls while fine-tuning in a real viewer")
    ap.add_argument("--screenshots", metavar="DIR", help="with --gui: save hitl_*.png of each stage here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.gui:
        from _hitl_gui import run_gui  # Qt and napari only for this mode

        print(json.dumps(run_gui(args.model, args.seconds, Path(args.screenshots) if args.screenshots else None), indent=1))
        return 0
    ks = [int(k) for k in args.ks.split(",")]
    patch = tuple(int(p) for p in args.patch.split(",")) if args.patch else None
    budget = {"iterations": args.iterations} if args.iterations else {"seconds": args.seconds}
    options = FinetuneOptions(**budget, lr=args.lr, consistency_weight=args.consistency, patch_size=patch,
                              seed=args.seed, replay_every=args.replay_every if args.replay else 0,
                              weak_weight=args.weak_weight, precision=args.precision, mix=args.mix)  # fmt: skip
    network, meta = load_model(find_model(args.model))
    replay = replay_cases(meta, Path(args.train_data), args.replay)
    cases = [c for c in load_cohort(args.data).cases if c.labeled]
    cases = [c for c in cases if c.case_id in args.case_ids] if args.case_ids else cases[: args.cases]
    if not cases:
        raise SystemExit(f"{args.data}: no labeled cases")
    start = time.monotonic()
    images = [read_volume(c.image) for c in cases]
    truths = [read_volume(c.label).array for c in cases]
    clean_before = [dice(segment(network, meta, im, args.overlap).labels == 1, t == 1) for im, t in zip(images, truths)]
    results: dict[str, Any] = {}
    done = resumed_cases(Path(args.resume)) if args.resume else {}
    kinds = args.shift.split("+")
    for i, case in enumerate(cases):
        if case.case_id in done:  # every case's shift and round depend on its own seeds only
            results[case.case_id] = done[case.case_id]
            print(json.dumps({case.case_id: done[case.case_id]}), file=sys.stderr, flush=True)
            continue
        scan = shifted(images[i], kinds, args.severity, args.seed + 10 * i)
        row, tuned = run_case(network, meta, scan, truths[i], ks, options, args.overlap, replay, args.axes, args.min_distance)
        j = (i + 1) % len(cases)
        if 3 in tuned:  # forgetting: the k = 3 model on another case, unshifted (the original centre)
            after = dice(segment(tuned[3], meta, images[j], args.overlap).labels == 1, truths[j] == 1)
            row["forgetting_k3"] = {"case": cases[j].case_id, "dice_before": round(clean_before[j], 4), "dice_after": round(after, 4),
                                    "change_points": round(100 * (after - clean_before[j]), 2)}  # fmt: skip
            # the centre it is tied to: another case through the same shift (same kinds, severity and seeds)
            other = shifted(images[j], kinds, args.severity, args.seed + 10 * i)
            base = dice(segment(network, meta, other, args.overlap).labels == 1, truths[j] == 1)
            after = dice(segment(tuned[3], meta, other, args.overlap).labels == 1, truths[j] == 1)
            row["same_centre_k3"] = {"case": cases[j].case_id, "dice_before": round(base, 4), "dice_after": round(after, 4),
                                     "change_points": round(100 * (after - base), 2)}  # fmt: skip
            if args.mix_grid:
                others = []
                for m in (m for m in range(len(cases)) if m != i):
                    other = shifted(images[m], kinds, args.severity, args.seed + 10 * i)
                    base = dice(segment(network, meta, other, args.overlap).labels == 1, truths[m] == 1)
                    others.append((images[m], other, truths[m], clean_before[m], base))
                mixes = [float(m) for m in args.mix_grid.split(",")]
                row["mix_grid_k3"] = mix_grid(
                    network, tuned[3], meta, scan, truths[i], row["dice_before"], others, mixes, args.overlap
                )
        results[case.case_id] = row
        print(json.dumps({case.case_id: row}), file=sys.stderr, flush=True)
    gains = {str(k): [r["rounds"][str(k)]["gain_points"] for r in results.values()] for k in ks}
    kept = {
        str(k): [100 * (r["rounds"][str(k)]["dice_after_corrections_kept"] - r["dice_before"]) for r in results.values()]
        for k in ks
    }
    forgetting = [r["forgetting_k3"]["change_points"] for r in results.values() if "forgetting_k3" in r]
    same_centre = [r["same_centre_k3"]["change_points"] for r in results.values() if "same_centre_k3" in r]
    summary = {
        "mean_gain_points": {k: round(float(np.mean(v)), 2) for k, v in gains.items()},
        "gain_points_ci95": {k: [round(b, 2) for b in bootstrap_ci(np.array(v))] for k, v in gains.items()},
        "slices_to_reach_0.90": slices_to_reach(results, ks, 0.90),
        "mean_gain_points_corrections_kept": {k: round(float(np.mean(v)), 2) for k, v in kept.items()},
        "mean_forgetting_points_k3": round(float(np.mean(forgetting)), 2) if forgetting else None,
        "worst_forgetting_points_k3": round(float(np.min(forgetting)), 2) if forgetting else None,
        "mean_same_centre_points_k3": round(float(np.mean(same_centre)), 2) if same_centre else None,
        "worst_same_centre_points_k3": round(float(np.min(same_centre)), 2) if same_centre else None,
        "goals": {"gain_k3_at_least": 5.0, "forgetting_at_least": -1.0},
    }
    print(json.dumps({
        "model": meta.name, "data": os.path.relpath(args.data, REPO), "shift": args.shift, "severity": args.severity, "ks": ks,
        "finetune": {**budget, "lr": args.lr, "consistency": args.consistency, "patch": list(patch) if patch else None,
                     "replay_cases": len(replay), "replay_every": options.replay_every, "weak_weight": options.weak_weight,
                     "precision": options.precision, "mix": options.mix},
        "axes": args.axes, "min_distance": args.min_distance, "overlap": args.overlap, "threads": args.threads, "cases": results, "summary": summary,
        "wall_seconds": round(time.monotonic() - start, 1),
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
