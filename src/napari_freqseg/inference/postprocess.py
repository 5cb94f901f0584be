"""What happens to network outputs after stitching: connected components, entropy, slice scores."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

AXES = ("z", "y", "x")


def largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep, for every foreground class, only its largest 26-connected component (in place)."""
    structure = np.ones((3, 3, 3), dtype=bool)
    for c in np.unique(labels):
        if c == 0:
            continue
        mask = labels == c
        components, n = ndimage.label(mask, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        labels[mask & (components != int(sizes.argmax()))] = 0
    return labels


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy of (K, ...) class probabilities divided by log K: 0 certain, 1 uniform."""
    k = probs.shape[0]
    p = probs.clamp_min(1e-8)
    h = -(p * p.log()).sum(dim=0)
    return h.div_(math.log(k)).clamp_(0.0, 1.0)


def slice_scores(uncertainty: np.ndarray) -> dict[str, np.ndarray]:
    """Mean uncertainty of every slice along each axis (z, y, x), float32: where to correct first."""
    u = np.asarray(uncertainty, dtype=np.float32)
    return {
        name: u.mean(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64).astype(np.float32)
        for axis, name in enumerate(AXES)
    }
