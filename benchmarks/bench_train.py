"""Seconds per training iteration of each method relative to supervised training, same batch.

Each method is the component list of its shipped config (configs/la_*.toml: same network, patch
size and batch sizes), trained on a synthetic cohort written to a temporary folder, so no data
is needed. Every method runs optimizer steps on one identical batch at an iteration past all
warm-ups (every loss term active); the median of the timed steps is reported, relative to
supervised and to the mean teacher measured in the same process, the methods timed in turn.
Methods whose components this version lacks are listed
under "missing".

    python benchmarks/bench_train.py [--steps 6] [--patch 32 64 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import write_volume
from napari_freqseg.training.config import ConfigError, Selection, load_config
from napari_freqseg.training.registry import load_components
from napari_freqseg.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = {
    "supervised": "la_supervised.toml",
    "mean_teacher": "la_mt.toml",
    "bfa": "la_bfa.toml",
    "frequency": "la_freq.toml",
    "frequency_bfa": "la_freq_bfa.toml",
    "midss": "la_midss.toml",
}


def write_cohort(root: Path, shape: tuple[int, int, int], n: int = 4) -> Path:
    """n blob volumes with labels, 1 mm isotropic, and their manifest."""
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    geometry = Geometry(shape[::-1], (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lines = ["case,image,label,site,split"]
    for i in range(n):
        c = rng.uniform(-0.2, 0.2, 3)
        label = (sum(((g - ci) / 0.45) ** 2 for g, ci in zip(grid, c)) <= 1).astype(np.uint8)
        image = (60 + 80 * label + 15 * rng.standard_normal(shape)).astype(np.float32)
        write_volume(image, geometry, root / f"c{i}.nii.gz")
        write_volume(label, geometry, root / f"c{i}_label.nii.gz")
        lines.append(f"c{i},c{i}.nii.gz,c{i}_label.nii.gz,s,train")
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    return root / "cohort.csv"


def prepare(config: Path, cohort: Path, tmp: Path, patch: tuple[int, int, int]) -> tuple[Trainer, dict, int]:
    """A trainer for `config`'s method on the synthetic cohort, one batch, and an iteration past
    every warm-up and ramp-up (every loss term active)."""
    cfg = load_config(config)
    data = replace(
        cfg.data,
        cohort=cohort,
        cache_dir=tmp / "cache",
        spacing=None,
        patch_size=patch,
        labeled=Selection(first=2),
        unlabeled=Selection(),
        val=None,
        num_workers=0,
    )
    cfg = replace(cfg, data=data, train=replace(cfg.train, val_every=0))
    trainer = Trainer(cfg, tmp / config.stem)
    trainer.prepare()
    batch = trainer.sampler.batch(0)
    late = int(cfg.train.iterations * 0.95)
    trainer.step(late, batch)  # the first step pays one-off allocation costs
    return trainer, batch, late + 1


def time_methods(trainers: dict[str, tuple[Trainer, dict, int]], steps: int) -> dict[str, float]:
    """Median seconds of one optimizer step per method, the methods timed in turn (one step of
    each per round), so that a load on the machine reaches them all alike."""
    times: dict[str, list[float]] = {m: [] for m in trainers}
    for i in range(steps):
        for method, (trainer, batch, it) in trainers.items():
            t0 = time.perf_counter()
            trainer.step(it + i, batch)
            times[method].append(time.perf_counter() - t0)
    return {m: statistics.median(t) for m, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per method")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], metavar=("Z", "Y", "X"))
    args = parser.parse_args()
    patch = tuple(args.patch)
    known = load_components()
    trainers, missing = {}, {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cohort = write_cohort(tmp, tuple(p + 16 for p in patch))
        for method, name in METHODS.items():
            path = CONFIGS / name
            if not path.is_file():
                missing[method] = f"no {name}"
                continue
            absent = [c for c in load_config(path).components if c not in known]
            if absent:
                missing[method] = f"component {', '.join(absent)} not in this version"
                continue
            try:
                trainers[method] = prepare(path, cohort, tmp, patch)
            except ConfigError as exc:
                missing[method] = str(exc)
        seconds = time_methods(trainers, args.steps)
    base = seconds["supervised"]
    cfg = load_config(CONFIGS / METHODS["supervised"])
    result = {
        "benchmark": "train_step",
        "patch_zyx": list(patch),
        "batch": {
            "labeled": cfg.train.batch_labeled,
            "unlabeled": load_config(CONFIGS / METHODS["mean_teacher"]).train.batch_unlabeled,
        },
        "network": {"n_filters": cfg.model.n_filters, "normalization": cfg.model.normalization},
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "supervised_seconds_per_iter": round(base, 3),
        "ratio_to_supervised": {m: round(s / base, 2) for m, s in seconds.items()},
        "ratio_to_mean_teacher": {m: round(s / seconds["mean_teacher"], 2) for m, s in seconds.items()},
        "missing": missing,
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
