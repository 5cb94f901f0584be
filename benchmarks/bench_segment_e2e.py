"""`freqseg segment` end to end (a fresh process: start-up, reading, model grid, sliding window,
mapping back, writing) against the sliding window alone (`sliding_window` on the prepared model
input, in this process), on the LA sample with a bundled model; medians of runs taken in turn.

    python benchmarks/bench_segment_e2e.py [--model la-vnet-sup] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_freqseg.inference import make_predictor, model_input, sliding_window
from napari_freqseg.inference.device import amp_dtype
from napari_freqseg.inference.fast import inference_copy
from napari_freqseg.io import read_volume
from napari_freqseg.models.modelfile import load_model
from napari_freqseg.models.registry import PREFERRED, find_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "napari_freqseg" / "sample_data" / "la_CCGAKN4EDT72KC8TTJ76_image.nii.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PREFERRED)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    network, meta = load_model(find_model(args.model))
    network.eval()
    x, _ = model_input(read_volume(SAMPLE), meta)
    device = torch.device("cpu")
    dtype = amp_dtype(device, "auto")
    net, channels_last = inference_copy(network, device, dtype=dtype)  # as predict_volume runs it
    predictor = make_predictor(net, device, dtype, channels_last)
    window, e2e = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "napari_freqseg.cli",
            "segment",
            str(SAMPLE),
            "-o",
            str(Path(tmp) / "seg.nii.gz"),
            "--model",
            args.model,
            "--device",
            "cpu",
            "--quiet",
        ]
        for _ in range(args.runs):
            t0 = time.perf_counter()
            with torch.no_grad():
                sliding_window(predictor, torch.from_numpy(x)[None], meta.patch_size, overlap=0.5)
            window.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            e2e.append(time.perf_counter() - t0)
    w, e = statistics.median(window), statistics.median(e2e)
    json.dump(
        {
            "benchmark": "segment_e2e",
            "model": meta.name,
            "runs": args.runs,
            "threads": torch.get_num_threads(),
            "precision": str(amp_dtype(device, "auto")).replace("torch.", ""),
            "sliding_window_seconds": round(w, 2),
            "segment_end_to_end_seconds": round(e, 2),
            "ratio_end_to_end_vs_window": round(e / w, 2),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
