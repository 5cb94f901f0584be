"""bfloat16 against float32 inference on the CPU, per case: do the labels stay the same, and how much
faster is it? The bundled models on the labeled cases of a folder, `predict_volume` with
precision 'fp32' and 'bf16' in turn (same process, interleaved). Prints JSON.

    python benchmarks/bench_precision.py [--model la-vnet-sup] [--data ../shared/data/la/val]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_freqseg.inference import predict_volume
from napari_freqseg.io import load_cohort, read_volume
from napari_freqseg.metrics import dice
from napari_freqseg.models.modelfile import load_model
from napari_freqseg.models.registry import PREFERRED, find_model

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PREFERRED)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "la" / "val")
    args = parser.parse_args()
    network, meta = load_model(find_model(args.model))
    cases = [c for c in load_cohort(args.data).cases if c.labeled]
    rows, ratios = [], []
    for case in cases:
        volume, truth = read_volume(case.image), read_volume(case.label).array > 0
        out, seconds = {}, {}
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            out[precision] = predict_volume(network, meta, volume, device="cpu", precision=precision).labels
            seconds[precision] = time.perf_counter() - t0
        agreement = dice(out["bf16"] > 0, out["fp32"] > 0)
        rows.append(
            {
                "case": case.case_id,
                "dice_bf16_vs_fp32": round(agreement, 5),
                "dice_vs_truth": {p: round(dice(out[p] > 0, truth), 4) for p in out},
                "seconds": {p: round(s, 2) for p, s in seconds.items()},
            }
        )
        ratios.append(seconds["bf16"] / seconds["fp32"])
        print(f"{case.case_id}: agreement {agreement:.5f}, bf16/fp32 time {ratios[-1]:.2f}", file=sys.stderr, flush=True)
    json.dump(
        {
            "benchmark": "precision",
            "model": meta.name,
            "data": os.path.relpath(args.data, REPO),
            "threads": torch.get_num_threads(),
            "min_agreement": min(r["dice_bf16_vs_fp32"] for r in rows),
            "median_time_ratio_bf16_vs_fp32": round(statistics.median(ratios), 3),
            "mean_dice_vs_truth": {p: round(float(np.mean([r["dice_vs_truth"][p] for r in rows])), 4) for p in ("fp32", "bf16")},
            "cases": rows,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
