"""Hard pseudo-labels from teacher probabilities, with a confidence mask."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def keep_largest_components(labels: torch.Tensor) -> torch.Tensor:
    """Per sample and foreground class, keep only the largest 26-connected component (BCP's
    pseudo-label cleaning on LA); other voxels of that class become background."""
    out = labels.detach().cpu().numpy().copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for volume in out:
        for c in np.unique(volume):
            if c == 0:
                continue
            components, n = ndimage.label(volume == c, structure=structure)
            if n > 1:
                sizes = np.bincount(components.ravel())[1:]
                volume[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return torch.from_numpy(out).to(labels.device)


def pseudo_labels(
    probs: torch.Tensor, threshold: float = 0.0, largest_component: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, D, H, W) probabilities -> (labels (N, D, H, W) int64, mask (N, D, H, W) float32 that is
    1 where the top probability exceeds `threshold`)."""
    confidence, labels = probs.detach().max(dim=1)
    if largest_component:
        labels = keep_largest_components(labels)
    return labels, (confidence > threshold).float()
