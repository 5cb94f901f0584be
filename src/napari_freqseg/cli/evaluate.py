"""`freqseg evaluate`: Dice, Jaccard, HD95, ASD per case, per site and overall.

Either compare label files (`--pred P --truth T`, files or folders matched by case name), or
segment every labeled case of a cohort with a model and compare (`--model M --cohort C`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FreqsegError
from ._common import TerminalProgress, print_json

if TYPE_CHECKING:  # annotations only: the module loads without torch
    from ..evaluation import CaseResult

_UNITS = {"dice": "", "jaccard": "", "hd95": " mm", "asd": " mm"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, Jaccard, HD95, ASD of segmentations, per case, site and overall")
    p.add_argument("--pred", metavar="P", help="predicted label map, or folder of them")
    p.add_argument("--truth", metavar="T", help="ground-truth label map, or folder of them (matched by case name)")
    p.add_argument(
        "--model", metavar="M", help="model name (see `freqseg models`) or .safetensors file to segment the cohort with"
    )
    p.add_argument("--cohort", metavar="C", help="cohort manifest (.csv) or site folders; labeled cases are evaluated")
    p.add_argument("--out", metavar="DIR", help="with --model: write predictions to DIR/<site>/<case>.nii.gz")
    p.add_argument("--classes", metavar="K", type=int, nargs="+", help="label values to evaluate (default: all non-zero found)")
    p.add_argument("--device", default="auto", help="with --model: cpu, cuda or auto (default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import (
        evaluate_cohort,
        evaluate_pairs,
        model_predictor,
        pair_files,
        summarize,
    )
    from ..io.cohort import load_cohort
    from ..models.registry import find_model

    files_mode = args.pred is not None or args.truth is not None
    model_mode = args.model is not None or args.cohort is not None
    if (
        files_mode == model_mode
        or (files_mode and not (args.pred and args.truth))
        or (model_mode and not (args.model and args.cohort))
    ):
        raise FreqsegError("give either --pred and --truth, or --model and --cohort")
    if args.out and not model_mode:
        raise FreqsegError("--out writes model predictions: use it with --model and --cohort")
    progress = TerminalProgress("evaluating", quiet=args.json)
    report: dict[str, Any] = {}
    if files_mode:
        pairs, only_pred, only_truth = pair_files(args.pred, args.truth)
        results = evaluate_pairs(pairs, classes=args.classes, progress=progress)
        report["unmatched"] = {"pred": only_pred, "truth": only_truth}
        for what, names in (("predictions", only_pred), ("truths", only_truth)):
            if names:
                print(f"note: {len(names)} {what} without a partner: {', '.join(names[:5])}", file=sys.stderr)
    else:
        predict, meta = model_predictor(find_model(args.model), device=args.device)
        results = evaluate_cohort(
            load_cohort(args.cohort).cases, predict, classes=args.classes, out_dir=args.out, progress=progress
        )
        report["model"] = str(Path(args.model))
        report["class_names"] = meta.classes
        if args.out:
            report["predictions"] = str(Path(args.out))
    summary = summarize(results)
    report.update(cases=[r.to_dict() for r in results], summary=summary)
    if args.json:
        print_json(report)
    else:
        _print_table(results, summary)
    return 0


def _print_table(results: list[CaseResult], summary: dict[str, Any]) -> None:
    from ..evaluation import format_stats, format_value
    from ..metrics import METRIC_NAMES

    case_w = max([4, *(len(r.case_id) for r in results)]) + 2  # columns as wide as their longest entry
    site_w = max([4, *(len(r.site) for r in results)]) + 2
    header = f"{'case':<{case_w}}{'site':<{site_w}}{'class':<7}" + "".join(f"{m + _UNITS[m]:>12}" for m in METRIC_NAMES)
    print(header)
    for r in results:
        for c, m in r.metrics.items():
            values = "".join(f"{format_value(getattr(m, name)):>12}" for name in METRIC_NAMES)
            print(f"{r.case_id:<{case_w}}{r.site:<{site_w}}{c:<7}{values}")
    groups = [(f"site {s}", stats) for s, stats in summary["sites"].items()] + [("overall", summary["overall"])]
    for label, per_class in groups:
        for c, stats in per_class.items():
            n = next(iter(stats.values()))["n"]
            parts = "  ".join(f"{m} {format_stats(stats[m])}{_UNITS[m]}" for m in METRIC_NAMES)
            print(f"{label} (n={n}) class {c}: {parts}")
