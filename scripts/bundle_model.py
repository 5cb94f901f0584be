"""Make a bundled model from a training run: its last checkpoint, a name and description, and the
metrics `freqseg evaluate` measures with the product's inference on the reported split.

    python scripts/bundle_model.py runs/compare/sup-s0/last.safetensors --name la-vnet-sup \
        --description "..." [--cohort configs/la_val.csv] [--style-from-labeled ../shared/data/la/train]

The run's training record (method, seed, iterations, data) is kept; the metrics it logged during
training on its tuning cases stay under `training`, the reported ones go to `metrics` (val_*).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from napari_freqseg.evaluation import evaluate_cohort
from napari_freqseg.harmonize import style_from_scans
from napari_freqseg.inference import predict_volume
from napari_freqseg.io import Volume, load_cohort
from napari_freqseg.models.modelfile import load_model, save_model

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the run's last checkpoint (a .safetensors model file)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--description", required=True)
    parser.add_argument("--task", help="what the model segments, e.g. 'left atrium segmentation, LGE-MRI' (default: the run's)")
    parser.add_argument("--cohort", type=Path, default=REPO / "configs" / "la_val.csv", help="the reported split")
    parser.add_argument("-o", "--output", type=Path, help="default: src/napari_freqseg/bundled_models/NAME.safetensors")
    parser.add_argument(
        "--style-from-labeled",
        type=Path,
        metavar="FOLDER",
        help="store the style of the run's labeled training cases (FOLDER/<case>/image.nii.gz) when the run has none",
    )
    args = parser.parse_args()
    output = args.output or REPO / "src" / "napari_freqseg" / "bundled_models" / f"{args.name}.safetensors"
    network, meta = load_model(args.model)  # loaded once: evaluated with the product's inference, then saved

    def predict(volume: Volume) -> np.ndarray:
        return predict_volume(network, meta, volume, device="cpu").labels

    cases = load_cohort(args.cohort).cases
    results = evaluate_cohort(cases, predict, classes=[1], progress=lambda i, n, c: print(f"{i}/{n} {c}", file=sys.stderr))
    per_case = {r.case_id: r.metrics[1] for r in results}

    def mean(name: str) -> float:
        values = np.array([getattr(m, name) for m in per_case.values()], dtype=float)
        return float(values[np.isfinite(values)].mean())

    cohort = args.cohort.resolve().relative_to(REPO) if args.cohort.resolve().is_relative_to(REPO) else args.cohort
    metrics = {
        "val_dice": mean("dice"),
        "val_jaccard": mean("jaccard"),
        "val_hd95_mm": mean("hd95"),
        "val_asd_mm": mean("asd"),
        "val_cases": {case: round(m.dice, 4) for case, m in per_case.items()},
        "val_cohort": sorted(per_case),
        "val_evaluated_by": f"freqseg evaluate --model {args.name} --cohort {cohort} --device cpu",
    }
    if not meta.style and args.style_from_labeled:  # for --harmonize: the inputs a supervised run trained on
        scans = [str(args.style_from_labeled / case / "image.nii.gz") for case in meta.training["labeled_cases"]]
        meta.style = style_from_scans(meta, scans).to_dict()
    training = {**meta.training, "metrics_during_training": meta.metrics}
    bundled = dataclasses.replace(
        meta, name=args.name, description=args.description, task=args.task or meta.task, metrics=metrics, training=training
    )
    save_model(output, network, bundled)
    print(f"{output}: {args.name}, val Dice {metrics['val_dice']:.4f} on {len(per_case)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
