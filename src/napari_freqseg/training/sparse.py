"""Sparse-slice supervision: the corrected slices of a scan as a weighted target on the model grid.

A person corrects a few slices of the scan (source grid); the network works on its own grid
(canonical orientation, its training spacing). The corrected-slice mask and the one-hot labels
are resampled linearly to the model grid: a model voxel's weight is its interpolated overlap with
corrected source slices, its target the class with the largest interpolated share. Only voxels
whose weight reaches `min_weight` are supervised, with their weight as the loss mask, so voxels off
the corrected slices never enter the supervised term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..inference.predict import model_input
from ..io.geometry import Geometry
from ..io.resample import resample
from ..io.volume import Volume
from ..models.modelfile import ModelMeta
from .losses import ce_dice

#: Model voxels supervised: at least half their interpolated weight from corrected source slices,
#: i.e. those whose nearest source slice along the slice axis is a corrected one.
MIN_WEIGHT = 0.5


@dataclass
class SparseTarget:
    """A scan on the model grid with its sparse supervision.

    x: normalised input (z, y, x) float32; weight: supervision weight in [0, 1], zero where not
    supervised; target: class per voxel (uint8, meaningful where weight > 0); grid: the model grid.
    """

    x: np.ndarray
    weight: np.ndarray
    target: np.ndarray
    grid: Geometry

    @property
    def supervised(self) -> int:
        """Number of supervised model voxels."""
        return int(np.count_nonzero(self.weight))


def sparse_target(
    x: np.ndarray,
    grid: Geometry,
    source: Geometry,
    labels: np.ndarray,
    corrected: np.ndarray,
    n_classes: int,
    min_weight: float = MIN_WEIGHT,
) -> SparseTarget:
    """Map source-grid `labels` on the `corrected` voxels (bool, z, y, x) to the model grid of `x`."""
    labels = np.asarray(labels)
    if labels.shape != source.shape_zyx or corrected.shape != source.shape_zyx:
        raise ValueError(f"labels {labels.shape} and mask {corrected.shape} must be on the source grid {source.shape_zyx}")
    if labels.max(initial=0) >= n_classes:
        raise ValueError(f"labels hold class {int(labels.max())}, the model has {n_classes} classes")
    weight = resample(corrected.astype(np.float32), source, grid, "linear")
    target = np.zeros(grid.shape_zyx, dtype=np.uint8)
    best = np.zeros(grid.shape_zyx, dtype=np.float32)
    for c in np.unique(labels[corrected]):
        share = resample(((labels == c) & corrected).astype(np.float32), source, grid, "linear")
        better = share > best
        target[better] = c
        np.maximum(best, share, out=best)
    weight[weight < min_weight - 1e-4] = 0.0  # tolerance: a voxel centre halfway between slices gets 0.5 up to rounding
    return SparseTarget(x=x, weight=np.minimum(weight, 1.0, out=weight), target=target, grid=grid)


def volume_target(volume: Volume, labels: np.ndarray, corrected: np.ndarray, meta: ModelMeta) -> SparseTarget:
    """`sparse_target` for a scan as a model sees it (its normalisation, orientation and spacing)."""
    x, grid = model_input(volume, meta)
    return sparse_target(x, grid, volume.geometry, labels, corrected, meta.n_classes)


def sparse_slice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ce_weight: float = 0.5, dice_weight: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE, Dice loss) over the supervised voxels only: `weight` (N, D, H, W) is the voxel mask, and
    a voxel of weight 0 contributes neither to the value nor to the gradient."""
    # Precursor: 3D U-Net trained from sparsely annotated slices, unannotated voxels weighted 0 (Çiçek et al. 2016).
    return ce_dice(logits, target, weight, ce_weight, dice_weight)
