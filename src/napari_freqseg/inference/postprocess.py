"""What happens to network outputs after stitching: connected components, entropy, slice scores."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch

AXES = ("z", "y", "x")


def largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep, for every foreground class, only its largest 26-connected component (in place).

    SimpleITK's labelling (already loaded for reading and writing) rather than scipy's: importing
    scipy.ndimage would add a fifth of a second to every `freqseg segment`.
    """
    for c in np.unique(labels):
        if c == 0:
            continue
        mask = labels == c
        image = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), True)
        components = sitk.GetArrayViewFromImage(image)  # a view: `image` must outlive it
        sizes = np.bincount(components.ravel())
        if len(sizes) <= 2:  # background and at most one component
            continue
        sizes[0] = 0
        labels[mask & (components != int(sizes.argmax()))] = 0
    return labels


def class_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Argmax over the class dimension (first) as uint8, the first maximum winning as in
    `torch.argmax`: K-1 element-wise comparisons, ~100x faster on the CPU than torch's argmax
    reduced over a leading dimension (0.3 s of a 4 s segmentation on the LA sample)."""
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8, device=scores.device)
    for k in range(1, scores.shape[0]):
        higher = scores[k] > best
        labels.masked_fill_(higher, k)
        torch.maximum(best, scores[k], out=best)
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
