"""Which slices to correct first: per-slice scores from a voxel uncertainty map, ranked.

A score per slice along any axis of a (z, y, x) map. With `reduce="sum"` (the default) and an
uncertainty that is a probability of error (1 - max softmax, or teacher/student disagreement),
the score is the expected number of wrong voxels in the slice: correcting the top slice fixes the
most errors. `reduce="mean"` favours small structures with a few very unsure voxels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

Reduce = Literal["sum", "mean"]


def slice_scores(
    uncertainty: np.ndarray, axis: int = 0, reduce: Reduce = "sum", corrected: np.ndarray | None = None
) -> np.ndarray:
    """One float64 score per index along `axis` of a 3D uncertainty map (z, y, x). Voxels of the
    boolean mask `corrected` (the corrected slices of any axis) count zero: they are fixed already,
    so a slice crossing a corrected one of another axis scores only what is left to correct."""
    u = np.asarray(uncertainty)
    if u.ndim != 3:
        raise ValueError(f"uncertainty must be 3D (z, y, x), got shape {u.shape}")
    if corrected is not None:
        if np.shape(corrected) != u.shape:
            raise ValueError(f"corrected mask {np.shape(corrected)} and uncertainty {u.shape} differ in shape")
        u = np.where(corrected, 0, u)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    other = tuple(a for a in range(3) if a != axis)
    # Accumulate in float64: float16/32 sums over 256² voxels lose the ordering of close slices.
    scores = u.sum(axis=other, dtype=np.float64)
    if reduce == "mean":
        scores /= u.shape[other[0]] * u.shape[other[1]]
    elif reduce != "sum":
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    return scores


def disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-voxel disagreement of two predictions, float32 in [0, 1], shape (z, y, x).

    Label maps (z, y, x): 1 where they differ. Class probabilities (C, z, y, x): the total
    variation distance 0.5 * sum_c |a_c - b_c|, i.e. how much probability mass moved class.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        return (a != b).astype(np.float32)
    if a.ndim == 4:
        return (0.5 * np.abs(a.astype(np.float32) - b.astype(np.float32)).sum(axis=0)).astype(np.float32)
    raise ValueError(f"expected label maps (z, y, x) or probabilities (C, z, y, x), got shape {a.shape}")


def rank_slices(scores: np.ndarray, exclude: Iterable[int] = (), min_distance: int = 0) -> list[int]:
    """Slice indices from most to least uncertain, without `exclude` (already corrected) and
    without slices scoring zero (nothing uncertain there).

    With `min_distance` d > 0, a slice closer than d to a better-ranked one or to an excluded one is
    dropped: neighbouring slices look alike, so correcting both teaches the model little more.
    Ties keep the lower index first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    taken = sorted({int(i) for i in exclude})
    order = np.argsort(-scores, kind="stable")
    ranked: list[int] = []
    for i in (int(i) for i in order):
        if not scores[i] > 0:
            break  # sorted: the rest are zero (or NaN)
        if i in taken:
            continue
        if min_distance > 0 and any(abs(i - j) < min_distance for j in taken):
            continue
        ranked.append(i)
        if min_distance > 0:
            taken.append(i)
    return ranked
