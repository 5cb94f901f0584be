"""3D boundaries of label maps: the voxels of a class that touch another class.

Used by boundary feature alignment (BFA) for ground-truth and pseudo-label boundaries alike, so
that both kinds are extracted by exactly the same rule. A voxel is on the boundary of its class
when one of its six face neighbours has a different label; the volume border is not a boundary
(an object cut by the patch edge has no surface there), which matches
`scipy.ndimage.binary_erosion(mask, border_value=1)` with the 6-connected structure.
"""

from __future__ import annotations

import torch


def label_change(labels: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W) int labels -> bool map of voxels with a face neighbour of another label."""
    if labels.ndim != 4:
        raise ValueError(f"labels must be (N, D, H, W), got shape {tuple(labels.shape)}")
    changed = torch.zeros_like(labels, dtype=torch.bool)
    for axis in (1, 2, 3):
        n = labels.shape[axis]
        if n < 2:
            continue
        diff = labels.narrow(axis, 1, n - 1) != labels.narrow(axis, 0, n - 1)
        changed.narrow(axis, 1, n - 1).logical_or_(diff)
        changed.narrow(axis, 0, n - 1).logical_or_(diff)
    return changed


def class_boundaries(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, C, D, H, W) bool: channel c holds the inner boundary of class c (background included,
    whose boundary is the outer shell of the foreground)."""
    changed = label_change(labels)
    classes = torch.arange(n_classes, device=labels.device).view(1, n_classes, 1, 1, 1)
    return (labels.unsqueeze(1) == classes) & changed.unsqueeze(1)


def boundary_map(labels: torch.Tensor, include_background: bool = False) -> torch.Tensor:
    """(N, D, H, W) bool boundary: inner surfaces of the foreground classes, or with
    `include_background` also the background side (a two-voxel band around every interface)."""
    changed = label_change(labels)
    return changed if include_background else changed & (labels > 0)
