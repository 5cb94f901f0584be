"""Harmonisation to the model's training style: Dice with and without it, clean and under shifts.

Each setting (`off`, `intensity`, `spectrum@BETA`, `both@BETA`; `spectrum-dc@BETA` replaces each
window's mean too, as plain FDA does) segments the same volumes (shift seeds fixed per case, as in
compare_report.py); the JSON gives per setting and condition the mean
Dice and the paired per-case difference against `off` (points, bootstrap 95 % interval).
Choose settings on the tuning cases (`--split tune`: 4 held-out la/train cases, labels used only to
score), report on la/val (`--split val`) with the settings fixed beforehand. On the tuning cases the
model's stored style is replaced by the style of the other 36 la/train scans (`--style-without-tune`,
the default there), so that the scans being harmonised are not part of the style they are moved to.

    python benchmarks/bench_harmonize.py --model la-vnet-freq-bfa --split tune --settings off intensity spectrum@0.05 both@0.05
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_report import bootstrap_ci, shifted  # noqa: E402

from napari_freqseg.harmonize import SpectrumHarmonized  # noqa: E402
from napari_freqseg.inference import predict_volume  # noqa: E402
from napari_freqseg.io import Volume, load_cohort, read_volume  # noqa: E402
from napari_freqseg.metrics import dice  # noqa: E402
from napari_freqseg.models.modelfile import load_model  # noqa: E402
from napari_freqseg.models.registry import PREFERRED, find_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "la"
#: The comparison's tuning cases (configs/compare/*.toml [data.val]): la/train cases held out for choices.
TUNE_CASES = ("BYSRSI3H4YTWKMM3MADP", "BZUFJX66T0W6ZPVTL9DU", "CB5P5W7X310NIIVU7UZV", "CBIJFVZ5L9BS0LKWE8YL")


def cases(split: str) -> list:
    if split == "val":
        return [c for c in load_cohort(DATA / "val").cases if c.labeled]
    by_id = {c.case_id: c for c in load_cohort(DATA / "train").cases}
    return [by_id[c] for c in TUNE_CASES]


def parse_setting(text: str) -> tuple[str, float, bool]:
    """(harmonize mode, beta, keep each window's mean)."""
    mode, _, beta = text.partition("@")
    keep_mean = not mode.endswith("-dc")
    return mode.removesuffix("-dc"), float(beta) if beta else 0.05, keep_mean


def style_without_tune(meta: object) -> dict:
    """The style of the la/train scans other than the tuning cases, as the model sees them."""
    from napari_freqseg.harmonize import style_from_scans

    scans = [str(c.image) for c in load_cohort(DATA / "train").cases if c.case_id not in TUNE_CASES]
    return style_from_scans(meta, scans).to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PREFERRED)
    parser.add_argument("--split", choices=("tune", "val"), default="tune")
    parser.add_argument("--settings", nargs="+", default=["off", "intensity", "spectrum@0.05", "both@0.05"])
    parser.add_argument("--conditions", nargs="+", default=["clean", "gamma", "bias", "style", "thick", "noise", "gamma+bias"])
    parser.add_argument("--out", type=Path, help="also write the per-case JSON here")
    parser.add_argument("--style-without-tune", action=argparse.BooleanOptionalAction, default=None,
                        help="tuning split: use the style of the other la/train scans (default on for --split tune)")  # fmt: skip
    args = parser.parse_args()
    network, meta = load_model(find_model(args.model))
    if args.style_without_tune if args.style_without_tune is not None else args.split == "tune":
        meta = dataclasses.replace(meta, style=style_without_tune(meta))
    chosen = cases(args.split)
    scores: dict[str, dict[str, dict[str, float]]] = {s: {c: {} for c in args.conditions} for s in args.settings}
    seconds: dict[str, float] = {s: 0.0 for s in args.settings}
    for i, case in enumerate(chosen):
        image, truth = read_volume(case.image), read_volume(case.label)
        for condition in args.conditions:
            volume = Volume(array=shifted(image, condition, i), geometry=image.geometry, source=str(case.image))
            for setting in args.settings:
                mode, beta, keep_mean = parse_setting(setting)
                SpectrumHarmonized.keep_mean = keep_mean
                t0 = time.perf_counter()
                pred = predict_volume(network, meta, volume, device="cpu", harmonize=mode, harmonize_beta=beta)
                seconds[setting] += time.perf_counter() - t0
                scores[setting][condition][case.case_id] = dice(pred.labels == 1, truth.array == 1)
        print(f"{i + 1}/{len(chosen)} {case.case_id}", file=sys.stderr, flush=True)
    summary: dict[str, dict[str, dict]] = {}
    for setting in args.settings:
        summary[setting] = {}
        for condition in args.conditions:
            d = scores[setting][condition]
            entry: dict = {"dice": round(float(np.mean(list(d.values()))), 4)}
            if setting != "off" and "off" in scores:
                diffs = 100 * np.array([d[c] - scores["off"][condition][c] for c in d])
                lo, hi = bootstrap_ci(diffs)
                entry["vs_off"] = {"mean": round(float(diffs.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)],
                                   "min": round(float(diffs.min()), 2), "wins": int((diffs > 0).sum()), "cases": len(diffs)}  # fmt: skip
            summary[setting][condition] = entry
    result = {"model": args.model, "split": args.split, "cases": [c.case_id for c in chosen], "style_scans": meta.style["scans"],
              "seconds_ratio_vs_off": {s: round(seconds[s] / seconds["off"], 3) for s in args.settings} if "off" in seconds else {},
              "summary": summary}  # fmt: skip
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**result, "per_case": scores}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
