"""A tiny multi-site cohort of blob volumes written to disk, and config tables that train on it."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import numpy as np

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import write_volume
from napari_freqseg.training.config import Config, parse_config

SHAPE = (24, 40, 40)  # (z, y, x)
SITES = {"a": (100.0, 80.0), "b": (400.0, -150.0), "c": (20.0, 40.0)}  # background, contrast per site


def blob_case(seed: int, background: float, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid at a random place with a random size; intensities per site."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in SHAPE], indexing="ij")
    c = [rng.uniform(0.35, 0.65) * s for s in SHAPE]
    r = [rng.uniform(0.18, 0.28) * s for s in SHAPE]
    label = (((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1).astype(np.uint8)
    image = background + contrast * label + 0.1 * abs(contrast) * rng.standard_normal(SHAPE)
    return image.astype(np.float32), label


def write_cohort(root: Path, per_site: int = 4) -> Path:
    """Sites a, b, c with `per_site` cases each (first two 'train', rest 'val'); all labeled."""
    geom = Geometry(
        size=SHAPE[::-1],
        spacing=(1.0, 1.0, 1.5),
        origin=(3.0, -2.0, 10.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    )
    rows = []
    for s, (site, (bg, contrast)) in enumerate(SITES.items()):
        for i in range(per_site):
            image, label = blob_case(100 * s + i, bg, contrast)
            folder = root / site
            folder.mkdir(parents=True, exist_ok=True)
            write_volume(image, geom, folder / f"{site}{i}.nii.gz")
            write_volume(label, geom, folder / f"{site}{i}_label.nii.gz")
            rows.append(
                [
                    f"{site}{i}",
                    f"{site}/{site}{i}.nii.gz",
                    f"{site}/{site}{i}_label.nii.gz",
                    site,
                    "train" if i < per_site // 2 + 1 else "val",
                ]
            )
    manifest = root / "cohort.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "image", "label", "site", "split"])
        w.writerows(rows)
    return manifest


def base_table(cohort: Path, cache: Path) -> dict[str, Any]:
    """A supervised config on site a: 16³ patches, a 2-filter V-Net, 4 iterations."""
    return {
        "name": "tiny",
        "seed": 3,
        "data": {
            "cohort": str(cohort),
            "cache_dir": str(cache),
            "classes": ["background", "blob"],
            "patch_size": [16, 32, 32],
            "labeled": {"site": "a", "split": "train", "first": 2},
            "val": {"site": "a", "split": "val"},
        },
        "model": {"n_filters": 2, "dropout": 0.2},
        "train": {
            "iterations": 4,
            "batch_labeled": 2,
            "batch_unlabeled": 2,
            "lr": 0.01,
            "val_every": 2,
            "checkpoint_every": 2,
            "log_every": 1,
        },
        "components": {"supervised": {}},
    }


def make_config(table: dict[str, Any], base: Path) -> Config:
    return parse_config(copy.deepcopy(table), base=base, where="test.toml")
