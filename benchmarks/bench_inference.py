"""Our sliding window against MONAI's `sliding_window_inference`, same network, volume, overlap and
Gaussian weighting, on CPU, in one process. Prints JSON.

Runs are interleaved (ours, MONAI, ...) and medians compared, so load from other processes hits
both alike. Peak memory is the highest resident-set size above the level just before each run
(freed heap given back to the OS first), sampled every 2 ms. Variants:
- `monai`: MONAI with the network as given (the baseline);
- `ours`: our sliding window with our inference copy of the network (batch norm folded into the
  convolutions, channels-last memory), the product's default path on CPU (float32);
- `monai_fast_net`: MONAI given our inference copy: separates the network from the stitching;
- `ours_bf16`: ours with bfloat16 autocast (opt-in `precision="bf16"`; needs a CPU with bf16).

    python benchmarks/bench_inference.py --model benchmarks/out/la_vnet_1500.safetensors --reps 15 --threads 1
    python benchmarks/bench_inference.py --native --reps 2   # SSL4MIS LA size, random weights
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import torch
from monai.inferers import sliding_window_inference

from napari_freqseg.inference import make_predictor, model_input, sliding_window
from napari_freqseg.inference.fast import inference_copy
from napari_freqseg.io import Geometry, Volume, read_volume
from napari_freqseg.models import ModelMeta, build_network, load_model

REPO = Path(__file__).resolve().parents[1]
LA_VAL = REPO.parent / "shared" / "data" / "la" / "val"
DEFAULT_MODEL = REPO / "benchmarks" / "out" / "la_quick_vnet.safetensors"


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so each run's RSS starts from what is live."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Highest RSS above the starting level while the context is open (sampled)."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _trim()
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def scan(synthetic: bool) -> tuple[Volume, str]:
    """The first LA val case, or a synthetic volume of the same size and spacing."""
    cases = sorted(LA_VAL.glob("*/image.nii.gz")) if LA_VAL.is_dir() and not synthetic else []
    if cases:
        return read_volume(cases[0]), f"../shared/data/la/val/{cases[0].parent.name}"
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in (88, 139, 186)], indexing="ij")
    blob = (zz / 0.6) ** 2 + (yy / 0.4) ** 2 + (xx / 0.3) ** 2 <= 1
    array = (40 + 60 * blob + 15 * rng.standard_normal(blob.shape)).clip(0, 255).astype(np.uint8)
    g = Geometry(
        size=(186, 139, 88), spacing=(0.625, 0.625, 0.625), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    return Volume(array, g), "synthetic 186×139×88"


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    fa, fb = a > 0, b > 0
    total = int(fa.sum() + fb.sum())
    return 1.0 if total == 0 else 2.0 * int((fa & fb).sum()) / total


def bench(network: torch.nn.Module, meta: ModelMeta, x: np.ndarray, overlap: float, batch: int, reps: int) -> dict:
    cpu = torch.device("cpu")
    patch = [int(p) for p in meta.patch_size]
    fast, channels_last = inference_copy(network, cpu)
    plain = network.eval()
    ours_pred = make_predictor(fast, cpu, None, channels_last)
    fast_bf16, bf16_channels_last = inference_copy(network, cpu, dtype=torch.bfloat16)  # the layout follows the precision
    bf16_pred = make_predictor(fast_bf16, cpu, torch.bfloat16, bf16_channels_last)
    tensor = torch.from_numpy(x)

    def ours(pred: Callable = ours_pred) -> torch.Tensor:
        return sliding_window(pred, tensor[None], patch, overlap=overlap, batch_size=batch, gaussian=True)

    def monai(net: torch.nn.Module) -> torch.Tensor:
        predictor = make_predictor(net, cpu, None, net is fast and channels_last)
        return sliding_window_inference(tensor[None, None], patch, batch, predictor, overlap=overlap, mode="gaussian")[0]

    variants = {
        "monai": lambda: monai(plain),
        "ours": ours,
        "monai_fast_net": lambda: monai(fast),
        "ours_bf16": lambda: ours(bf16_pred),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    memory: dict[str, float] = {}
    labels: dict[str, torch.Tensor] = {}
    window = torch.zeros(batch, 1, *patch)
    with torch.inference_mode():
        for pred in (ours_pred, bf16_pred, make_predictor(plain, cpu, None, False)):  # warm-up: oneDNN primitives
            pred(window)
        for _ in range(reps):
            for name, fn in variants.items():
                with PeakRSS() as peak:
                    start = time.perf_counter()
                    out = fn()
                    times[name].append(time.perf_counter() - start)
                memory[name] = max(memory.get(name, 0.0), peak.mib)
                labels[name] = out.argmax(0)
                del out
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model_grid_zyx": list(x.shape),
        "patch_zyx": patch,
        "overlap": overlap,
        "batch_size": batch,
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "peak_mib_above_start": {k: round(v, 1) for k, v in memory.items()},
        "time_ratio_ours_vs_monai": round(med["ours"] / med["monai"], 3),
        "time_ratio_ours_vs_monai_fast_net": round(med["ours"] / med["monai_fast_net"], 3),
        "time_ratio_ours_bf16_vs_monai": round(med["ours_bf16"] / med["monai"], 3),
        "memory_ratio_ours_vs_monai": round(memory["ours"] / max(memory["monai"], 1e-6), 3),
        "dice_ours_vs_monai": round(dice(labels["ours"], labels["monai"]), 5),
        "dice_ours_bf16_vs_monai": round(dice(labels["ours_bf16"], labels["monai"]), 5),
        "voxel_agreement_ours_vs_monai": round(float((labels["ours"] == labels["monai"]).float().mean()), 6),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="model file (default: the quick LA model if trained)")
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--synthetic", action="store_true", help="use a synthetic volume even if ../shared/data is present")
    ap.add_argument(
        "--native",
        action="store_true",
        help="SSL4MIS LA setting instead: random V-Net (16 filters), 0.625 mm, 80×112×112 patches",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.native:
        meta = ModelMeta(name="random", architecture="vnet", arch_args={"n_filters": 16, "normalization": "batch"},
                         classes=["background", "foreground"], spacing=None, patch_size=[80, 112, 112])  # fmt: skip
        network, model_name = build_network(meta).eval(), "random V-Net, SSL4MIS LA size"
    elif Path(args.model).is_file():
        network, meta = load_model(args.model)
        model_name = meta.name
    else:  # random weights: timings still compare, label agreement is on a random network
        meta = ModelMeta(name="random", architecture="vnet", arch_args={"n_filters": 8, "normalization": "batch"},
                         classes=["background", "foreground"], spacing=[1.25, 1.25, 1.25], patch_size=[32, 64, 64])  # fmt: skip
        network, model_name = build_network(meta).eval(), "random V-Net (no trained model found)"
    volume, source = scan(args.synthetic)
    x, _ = model_input(volume, meta)
    result = {
        "benchmark": "bench_inference",
        "model": model_name,
        "architecture": meta.architecture,
        "arch_args": meta.arch_args,
        "volume": source,
        "threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "bf16_cpu": bool(torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported()),
        **bench(network, meta, x, args.overlap, args.batch_size, args.reps),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
