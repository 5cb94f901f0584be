"""Train a small supervised V-Net on LA for the segmentation demo and benchmarks (a few minutes on CPU).

Not a bundled model (the training engine makes those): the smallest loop that gives a network
whose labels mean something, so that inference can be checked and timed on real predictions.
Setting as in docs: first 8 labeled cases of ../shared/data/la/train, 1.25 mm, 32×64×64 (z, y, x)
patches (half centred on foreground), batch 2, flips and in-plane 90° rotations, AdamW with a
one-cycle schedule (peak 2e-3), cross-entropy + Dice; validated on the 8 cases of la/val.

    python benchmarks/train_quick_la.py --iterations 800 -o benchmarks/out/la_quick_vnet.safetensors
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_freqseg.inference import model_input, predict_volume
from napari_freqseg.io import read_volume
from napari_freqseg.io.resample import resample
from napari_freqseg.models import ModelMeta, build_network, save_model

REPO = Path(__file__).resolve().parents[1]
LA = REPO.parent / "shared" / "data" / "la"
PATCH = (32, 64, 64)


def load_cases(split: str, n: int, meta: ModelMeta) -> list[tuple[np.ndarray, np.ndarray]]:
    with open(LA / "cases.csv") as fh:
        ids = [r["id"] for r in csv.DictReader(fh) if r["split"] == split][:n]
    cases = []
    for case in ids:
        image = read_volume(LA / split / case / "image.nii.gz")
        label = read_volume(LA / split / case / "label.nii.gz")
        x, grid = model_input(image, meta)
        y = resample(label.array.astype(np.float32), image.geometry, grid, "linear") > 0.5
        cases.append((x, y.astype(np.int64)))
    return cases


def sample_patch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pad = [(0, max(0, p - s)) for s, p in zip(x.shape, PATCH)]
    x, y = np.pad(x, pad), np.pad(y, pad)
    if rng.random() < 0.5 and y.any():
        centre = np.argwhere(y)[rng.integers(int(y.sum()))]
        lo = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, PATCH, x.shape)]
    else:
        lo = [int(rng.integers(0, s - p + 1)) for s, p in zip(x.shape, PATCH)]
    sl = tuple(slice(a, a + p) for a, p in zip(lo, PATCH))
    xp, yp = x[sl], y[sl]
    for axis in range(3):
        if rng.random() < 0.5:
            xp, yp = np.flip(xp, axis), np.flip(yp, axis)
    k = int(rng.integers(4))
    return np.rot90(xp, k, axes=(1, 2)).copy(), np.rot90(yp, k, axes=(1, 2)).copy()


def dice_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, 1)[:, 1]
    t = (y == 1).float()
    return 1 - (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=800)
    ap.add_argument("--n-filters", type=int, default=8)
    ap.add_argument("--normalization", default="batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "out" / "la_quick_vnet.safetensors"))
    args = ap.parse_args()
    if not LA.is_dir():
        print(f"needs {LA}", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    meta = ModelMeta(
        name="la-quick-vnet",
        architecture="vnet",
        arch_args={"n_filters": args.n_filters, "normalization": args.normalization, "dropout": 0.5},
        classes=["background", "left atrium"],
        spacing=[1.25, 1.25, 1.25],
        orientation="LPS",
        patch_size=list(PATCH),
        task="left atrium, LGE-MRI",
        training={
            "method": "supervised",
            "data": "../shared/data/la/train (first 8 cases of cases.csv)",
            "labeled_cases": 8,
            "labeled_fraction": 0.2,
            "iterations": args.iterations,
            "command": "python benchmarks/train_quick_la.py " + " ".join(sys.argv[1:]),
        },
        description="quick supervised V-Net for the segmentation demo and benchmarks",
    )
    train = load_cases("train", 8, meta)
    net = build_network(meta).train()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.iterations)
    start = time.perf_counter()
    for it in range(1, args.iterations + 1):
        batch = [sample_patch(*train[int(rng.integers(len(train)))], rng) for _ in range(2)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        logits = net(x)
        loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 50 == 0:
            print(f"it {it} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    net.eval()
    dices = []
    with open(LA / "cases.csv") as fh:
        val_ids = [r["id"] for r in csv.DictReader(fh) if r["split"] == "val"]
    for case in val_ids:
        image = read_volume(LA / "val" / case / "image.nii.gz")
        truth = read_volume(LA / "val" / case / "label.nii.gz").array > 0
        pred = predict_volume(net, meta, image, device="cpu").labels > 0
        dices.append(2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))
    meta.metrics = {"val_dice": round(float(np.mean(dices)), 4), "val_cases": len(dices)}
    path = save_model(args.output, net, meta)
    print(json.dumps({"model": str(path), "seconds": round(time.perf_counter() - start), **meta.metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
