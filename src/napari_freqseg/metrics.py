"""Segmentation metrics in millimetres: Dice, Jaccard, HD95 and ASD, per class of a label map.

Surfaces are the mask voxels removed by one 6-connected erosion (as MONAI and the semi-supervised
LA literature compute them); distances run between voxel centres scaled by the voxel spacing, so
anisotropic grids are measured correctly. HD95 is the larger of the two directed 95th percentiles;
ASD is the mean of both directed distance sets together (symmetric), as MONAI defines them.

Empty masks (documented in docs/methods.md):
- both empty: Dice = Jaccard = 1, HD95 = ASD = 0 (nothing to find and nothing found);
- one empty: Dice = Jaccard = 0, HD95 = ASD = inf (no surface to reach), as MONAI returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_erosion
from scipy.spatial import cKDTree

#: Metric names in reporting order; Dice/Jaccard are fractions, HD95/ASD millimetres.
METRIC_NAMES: tuple[str, ...] = ("dice", "jaccard", "hd95", "asd")


@dataclass(frozen=True)
class ClassMetrics:
    """Overlap and surface-distance metrics of one class (distances in mm; inf when one mask is empty)."""

    dice: float
    jaccard: float
    hd95: float
    asd: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-friendly values: an infinite distance becomes None."""
        return {k: (v if math.isfinite(v) else None) for k, v in ((n, getattr(self, n)) for n in METRIC_NAMES)}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of two binary masks (1 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, t).sum()) / total


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index |P∩T| / |P∪T| of two binary masks (1 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = int(np.logical_or(p, t).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, t).sum()) / union


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of `pred` to the nearest surface voxel of `truth`, and
    back. Both arrays are empty when both masks are; a side whose target mask is empty gets inf."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != t.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {t.shape}")
    union = p | t
    if not union.any():
        return np.zeros(0), np.zeros(0)
    crop = _bounding_box(union)
    p_pts, t_pts = _surface_points(p[crop], spacing_zyx), _surface_points(t[crop], spacing_zyx)
    return _nearest(p_pts, t_pts), _nearest(t_pts, p_pts)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance (mm)."""
    return _hd95(*surface_distances(pred, truth, spacing_zyx))


def asd(pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """Average symmetric surface distance (mm)."""
    return _asd(*surface_distances(pred, truth, spacing_zyx))


def binary_metrics(pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> ClassMetrics:
    """All four metrics of two binary masks, extracting the surfaces once."""
    d_pt, d_tp = surface_distances(pred, truth, spacing_zyx)
    return ClassMetrics(dice=dice(pred, truth), jaccard=jaccard(pred, truth), hd95=_hd95(d_pt, d_tp), asd=_asd(d_pt, d_tp))


def label_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
    classes: Iterable[int] | None = None,
) -> dict[int, ClassMetrics]:
    """Metrics per foreground class of two integer label maps on the same grid.

    `classes` defaults to every non-zero value found in either map (a class missing from one map
    then scores Dice 0, HD95 inf).
    """
    p, t = _as_labels(pred, "prediction"), _as_labels(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"label maps differ in shape: {p.shape} vs {t.shape}")
    if classes is None:
        classes = sorted((set(np.unique(p).tolist()) | set(np.unique(t).tolist())) - {0})
    return {int(c): binary_metrics(p == c, t == c, spacing_zyx) for c in classes}


def _as_labels(array: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind in "bu":
        return a
    if a.dtype.kind == "i":
        if a.size and a.min() < 0:
            raise ValueError(
                f"the {what} holds negative labels (down to {int(a.min())}); label maps hold 0 (background) and positive classes"
            )
        return a
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.array_equal(a, np.round(a)) and a.min() >= 0:
        return a.astype(np.int64)
    raise ValueError(f"{what} is not a label map (dtype {a.dtype} with non-integer values)")


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices around the non-zero voxels with one voxel of margin (erosion needs it)."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - 1, 0), int(idx[-1]) + 2))
    return tuple(out)


def _surface_points(mask: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Physical (mm) coordinates of the voxels on the mask's surface (mask minus its erosion)."""
    edges = mask & ~binary_erosion(mask)  # outside the array counts as background
    return np.argwhere(edges).astype(np.float64) * np.asarray(spacing_zyx, dtype=np.float64)


def _nearest(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if len(src) == 0:
        return np.zeros(0)
    if len(dst) == 0:
        return np.full(len(src), np.inf)
    return cKDTree(dst, leafsize=32).query(src, k=1)[0]


def _hd95(d_pt: np.ndarray, d_tp: np.ndarray) -> float:
    if len(d_pt) == 0 and len(d_tp) == 0:
        return 0.0
    if len(d_pt) == 0 or len(d_tp) == 0:
        return math.inf
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def _asd(d_pt: np.ndarray, d_tp: np.ndarray) -> float:
    if len(d_pt) == 0 and len(d_tp) == 0:
        return 0.0
    if len(d_pt) == 0 or len(d_tp) == 0:
        return math.inf
    return float(np.concatenate([d_pt, d_tp]).mean())
