"""Label edits that napari's Labels tools lack, on a slice (2D) or a volume (3D).

Each edit takes an integer label array and returns a new one of the same shape and dtype (the input
is never modified), so the caller decides how to apply it: the widget writes only the changed
voxels through the layer's undo history (`region_changes`). Label-aware: with `label=None` every
non-zero label is treated, otherwise only that one; other labels are never overwritten except by
`smooth(method="majority")` and `interpolate_slices`, which decide between all labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from .record import slice_key

SmoothMethod = Literal["majority", "open-close"]


def _values(labels: np.ndarray, label: int | None) -> list[int]:
    if label is not None:
        return [int(label)] if label != 0 else []
    return [int(v) for v in np.unique(labels) if v != 0]


def _face_structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, 1)


def fill_holes(labels: np.ndarray, label: int | None = None) -> np.ndarray:
    """Give enclosed background (not connected to the array border) to the label around it.

    Per label, holes of that label's mask are filled; with `label=None`, background that is enclosed
    by several labels together then gets the label most frequent on its rim, so no enclosed
    background is left.
    """
    out = labels.copy()
    for value in _values(labels, label):
        filled = ndimage.binary_fill_holes(labels == value, structure=_face_structure(labels.ndim))
        out[filled & (out == 0)] = value
    if label is None:
        _fill_mixed_holes(out)
    return out


def _fill_mixed_holes(out: np.ndarray) -> None:
    components, n = ndimage.label(out == 0, structure=_face_structure(out.ndim))
    if n == 0:
        return
    border = np.zeros(out.shape, dtype=bool)
    for axis in range(out.ndim):
        border[slice_key(axis, 0, out.ndim)] = True
        border[slice_key(axis, -1, out.ndim)] = True
    open_ids = set(np.unique(components[border]).tolist())
    for cid, box in enumerate(ndimage.find_objects(components), start=1):
        if cid in open_ids or box is None:
            continue
        grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        hole = components[grown] == cid
        rim = ndimage.binary_dilation(hole, structure=_face_structure(out.ndim)) & ~hole
        values, counts = np.unique(out[grown][rim], return_counts=True)
        out[grown][hole] = values[np.argmax(counts)]


def remove_small_components(labels: np.ndarray, min_size: int, label: int | None = None) -> np.ndarray:
    """Set to background the connected components (face connectivity) of fewer than `min_size`
    voxels, per label."""
    out = labels.copy()
    for value in _values(labels, label):
        components, n = ndimage.label(labels == value, structure=_face_structure(labels.ndim))
        if n == 0:
            continue
        sizes = np.bincount(components.ravel())
        small = sizes < min_size
        small[0] = False
        out[small[components]] = 0
    return out


def smooth(labels: np.ndarray, radius: int = 1, method: SmoothMethod = "majority", label: int | None = None) -> np.ndarray:
    """Smooth label boundaries within a (2·radius+1) neighbourhood.

    "majority": each voxel takes the most frequent label (background included) of its box
    neighbourhood, the multi-label form of a median filter; ties keep the current label. With
    `label` set, only voxels that are or become that label change.
    "open-close": per label, a binary opening then closing with a ball of `radius`; lost voxels
    become background, gained ones are taken from background only.
    """
    if radius < 1:
        return labels.copy()
    if method == "majority":
        return _majority(labels, radius, label)
    if method == "open-close":
        return _open_close(labels, radius, label)
    raise ValueError(f"method must be 'majority' or 'open-close', got {method!r}")


def _majority(labels: np.ndarray, radius: int, label: int | None) -> np.ndarray:
    values = [0, *_values(labels, None)]
    size = 2 * radius + 1
    best = np.full(labels.shape, -1.0, dtype=np.float32)
    out = labels.copy()
    for value in values:
        mask = labels == value
        # The current label gets a bonus below one voxel's share, so ties keep it.
        share = ndimage.uniform_filter(mask.astype(np.float32), size=size, mode="nearest") + 0.5 / size**labels.ndim * mask
        better = share > best
        best[better] = share[better]
        out[better] = value
    if label is not None:
        keep = (labels != label) & (out != label)
        out[keep] = labels[keep]
    return out


def _ball(ndim: int, radius: int) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid**2).sum(axis=0) <= radius**2


def _open_close(labels: np.ndarray, radius: int, label: int | None) -> np.ndarray:
    ball = _ball(labels.ndim, radius)
    pad = radius + 1
    out = labels.copy()
    for value in _values(labels, label):
        # Pad with edge values so that structures touching the border are not eroded from outside.
        mask = np.pad(labels == value, pad, mode="edge")
        mask = ndimage.binary_closing(ndimage.binary_opening(mask, ball), ball)
        mask = mask[(slice(pad, -pad),) * labels.ndim]
        was = labels == value
        out[was & ~mask] = 0
        out[mask & ~was & (out == 0)] = value
    return out


def copy_slice(volume: np.ndarray, axis: int, source: int, target: int, label: int | None = None) -> np.ndarray:
    """New content of slice `target` along `axis`: the labels of slice `source` (e.g. its
    neighbour). With `label` set, only that label is copied; the target's other labels stay."""
    src = volume[slice_key(axis, source)]
    if label is None:
        return src.copy()
    out = volume[slice_key(axis, target)].copy()
    out[out == label] = 0
    out[(src == label) & (out == 0)] = label
    return out


def _signed_distance(mask: np.ndarray, sampling: Sequence[float] | None) -> np.ndarray:
    """Negative inside, positive outside, zero half-way between boundary voxels (float32)."""
    if not mask.any():
        raise ValueError("empty mask has no signed distance")
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling) if not mask.all() else inside
    # Half a voxel back from each voxel centre puts the zero level on the boundary between voxels.
    half = 0.5 * (min(sampling) if sampling is not None else 1.0)
    return np.where(mask, half - inside, outside - half).astype(np.float32)


def interpolate_slices(
    volume: np.ndarray, axis: int, first: int, last: int, sampling: Sequence[float] | None = None
) -> np.ndarray:
    """Labels for the slices strictly between `first` and `last` along `axis` (returned with that
    axis of length |last - first| - 1): a shape-based interpolation of the two end slices, signed
    distance maps blended linearly per label, each voxel taking the label it is deepest inside.

    A label present on only one end shrinks linearly to nothing at the other end: its missing
    distance map is its own one shifted by its depth, the shape fully eroded (our choice; shape-based
    interpolation, Raya & Udupa 1990, leaves this case open). `sampling` is the in-plane spacing
    (mm) of the two remaining axes, in array order.
    """
    a, b = sorted((int(first), int(last)))
    end_a = volume[slice_key(axis, a)]
    end_b = volume[slice_key(axis, b)]
    values = sorted(({int(v) for v in np.unique(end_a)} | {int(v) for v in np.unique(end_b)}) - {0})
    steps = np.arange(1, max(b - a, 1), dtype=np.float32) / (b - a)  # t of each in-between slice
    best = np.zeros((len(steps), *end_a.shape), dtype=np.float32)  # most negative distance so far
    result = np.zeros(best.shape, dtype=volume.dtype)
    for value in values:
        d_a, d_b = _end_distances(end_a == value, end_b == value, sampling)
        for k, t in enumerate(steps):
            d = (1.0 - t) * d_a + t * d_b
            take = d < best[k]
            best[k][take] = d[take]
            result[k][take] = value
    return np.moveaxis(result, 0, axis)


def weak_labels(
    labels: np.ndarray, corrected: Iterable[tuple[int, int]], spacing_zyx: Sequence[float], max_gap: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Shape-interpolated labels between neighbouring corrected slices of the same axis, and the mask
    of the voxels they cover: weak labels for a fine-tuning round.

    `corrected`: (axis, index) pairs. Gaps wider than `max_gap` slices are left out (a shape far from
    both ends is a guess), and so is every voxel of a corrected slice (those have real labels). Where
    gaps of two axes cross, the first axis (z, then y, then x) is kept.
    """
    labels = np.asarray(labels)
    out = np.zeros_like(labels)
    mask = np.zeros(labels.shape, dtype=bool)
    on_corrected = np.zeros(labels.shape, dtype=bool)
    by_axis: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for axis, index in corrected:
        by_axis[int(axis)].append(int(index))
        on_corrected[slice_key(int(axis), int(index))] = True
    for axis, indices in by_axis.items():
        sampling = [float(s) for a, s in enumerate(spacing_zyx) if a != axis]
        ends = sorted(set(indices))
        for a, b in zip(ends, ends[1:]):
            if b - a < 2 or b - a > max_gap + 1:
                continue
            key = between_key(axis, a, b)
            filled = interpolate_slices(labels, axis, a, b, sampling)
            free = ~mask[key] & ~on_corrected[key]
            out[key][free] = filled[free]
            mask[key] |= free
    return out, mask


def between_key(axis: int, first: int, last: int) -> tuple[slice, ...]:
    """Index of the slices strictly between `first` and `last` along `axis` of a 3D array."""
    a, b = sorted((int(first), int(last)))
    key = [slice(None)] * 3
    key[axis] = slice(a + 1, b)
    return tuple(key)


def _end_distances(mask_a: np.ndarray, mask_b: np.ndarray, sampling: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    if mask_a.any() and mask_b.any():
        return _signed_distance(mask_a, sampling), _signed_distance(mask_b, sampling)
    present = _signed_distance(mask_a if mask_a.any() else mask_b, sampling)
    gone = present - present.min() + 1.0  # fully eroded: positive everywhere, same slopes
    return (present, gone) if mask_a.any() else (gone, present)


def region_changes(
    volume: np.ndarray, new: np.ndarray, region: tuple[slice | int, ...] | None = None
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Voxels where `new` differs from `volume[region]`, as full-volume index arrays and new values.

    `region` is a basic index (ints and step-1 slices) into `volume`; None means the whole volume.
    The result feeds a history-aware setter such as napari's `Labels.data_setitem`.
    """
    key = region if region is not None else (slice(None),) * volume.ndim
    old = volume[key]
    if old.shape != new.shape:
        raise ValueError(f"new region has shape {new.shape}, the volume region {old.shape}")
    changed = old != new
    local = np.nonzero(changed)
    indices: list[np.ndarray] = []
    dim = 0
    for axis, part in enumerate(key + (slice(None),) * (volume.ndim - len(key))):
        if isinstance(part, slice):
            start = part.indices(volume.shape[axis])[0]
            indices.append(local[dim] + start)
            dim += 1
        else:
            indices.append(np.full(int(changed.sum()), int(part), dtype=np.intp))
    return tuple(indices), new[changed]
