"""Frequency-reliance map of a model (frequency-shortcut analysis): remove one radial band at a
time from the input and record how much worse the segmentation gets.

With labels the measure is the drop in Dice; without, the rise in cross-entropy against the
model's own prediction on the intact volume. A band whose removal costs a lot is one the model
relies on; a sharp peak on a narrow band is the signature of a frequency shortcut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CancelledError
from .bands import filter_bands, nyquist, shell_edges, spatial_ndim
from .grad import Progress


@dataclass
class RelianceCurve:
    """Per-band reliance: values[b] is the cost of removing shell b (edges[b]..edges[b+1])."""

    edges: list[float]
    unit: str  # cycles/mm or cycles/voxel
    metric: str  # "dice_drop" or "loss_rise"
    baseline: float  # Dice (or loss) on the intact volume
    values: list[float]

    @property
    def centres(self) -> np.ndarray:
        e = np.asarray(self.edges)
        return (e[:-1] + e[1:]) / 2

    def to_dict(self) -> dict:
        return asdict(self)


def foreground_dice(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> float:
    """Mean Dice over foreground classes 1..K-1 (a class absent from both counts as 1)."""
    scores = []
    for k in range(1, n_classes):
        p, t = pred == k, target == k
        denom = int(p.sum()) + int(t.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom)
    return float(np.mean(scores)) if scores else 1.0


def reliance_curve(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    n_bands: int = 8,
    spacing: Sequence[float] | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RelianceCurve:
    """Reliance of `predict` (network input -> logits) on each of `n_bands` radial shells of x.

    x: (1, C, *spatial) network input (already normalised); labels: (1, *spatial) or None.
    """
    spatial_ndim(x)
    logits = predict(x)
    n_classes = logits.shape[1]
    if labels is None:
        target = logits.argmax(1)
        baseline = float(F.cross_entropy(logits, target))
    else:
        target = labels.to(logits.device).long()
        baseline = foreground_dice(logits.argmax(1), target, n_classes)
    values = []
    for band in range(n_bands):
        if cancelled is not None and cancelled():
            raise CancelledError("cancelled")
        gains = torch.ones(n_bands)
        gains[band] = 0.0
        out = predict(filter_bands(x, gains, spacing))
        if labels is None:
            values.append(float(F.cross_entropy(out, target)) - baseline)
        else:
            values.append(baseline - foreground_dice(out.argmax(1), target, n_classes))
        if progress is not None:
            progress(band + 1, n_bands, f"band {band + 1}/{n_bands}")
    return RelianceCurve(
        edges=shell_edges(n_bands, nyquist(spacing)).tolist(),
        unit="cycles/mm" if spacing is not None else "cycles/voxel",
        metric="loss_rise" if labels is None else "dice_drop",
        baseline=baseline,
        values=values,
    )
