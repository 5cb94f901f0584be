"""The model grid: a volume in a canonical orientation at a model's spacing, and the way back.

Networks see their training orientation and spacing; outputs are mapped back to the source grid
so that a segmentation overlays the scan exactly in any viewer. One SimpleITK resample does both
the reorientation (axis permutation/flips) and the change of spacing.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


def model_grid(source: Geometry, spacing: tuple[float, float, float] | None, orientation: str | None) -> Geometry:
    """Grid covering the physical extent of `source`, with index axes ordered/flipped to
    `orientation` (ITK three-letter code, e.g. 'LPS') and voxel size `spacing` (x, y, z, mm).

    None keeps the source's orientation or spacing. The direction stays oblique if the source is.
    """
    oriented = _oriented(source, orientation) if orientation and orientation != source.orientation else source
    if spacing is None:
        return oriented
    spacing = tuple(float(s) for s in spacing)
    if np.allclose(spacing, oriented.spacing, rtol=0, atol=1e-6):
        return oriented
    extent = np.asarray(oriented.size) * np.asarray(oriented.spacing)
    size = tuple(int(max(1, round(e / s))) for e, s in zip(extent, spacing))
    # Keep the grid centred on the same physical box: voxel centres move by half the size change.
    d = oriented.direction_matrix
    shift = (np.asarray(spacing) - np.asarray(oriented.spacing)) / 2.0
    origin = np.asarray(oriented.origin) + d @ shift
    return Geometry(size=size, spacing=spacing, origin=tuple(float(v) for v in origin), direction=oriented.direction)


def _oriented(source: Geometry, orientation: str) -> Geometry:
    """`source` with its index axes permuted/flipped as `sitk.DICOMOrient` would, computed from a
    1-voxel probe so that no image of the source's size is allocated (scans can be huge)."""
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetDirection(source.direction)
    orient = sitk.DICOMOrientImageFilter()
    orient.SetDesiredCoordinateOrientation(orientation)
    orient.Execute(probe)
    perm, flips = orient.GetPermuteOrder(), orient.GetFlipAxes()
    d = source.direction_matrix
    size = [source.size[p] for p in perm]
    spacing = [source.spacing[p] for p in perm]
    columns = [d[:, p] * (-1.0 if flip else 1.0) for p, flip in zip(perm, flips)]
    origin = np.asarray(source.origin, dtype=float)
    for j, (p, flip) in enumerate(zip(perm, flips)):
        if flip:  # the first voxel is now the old last one along that axis
            origin = origin + d[:, p] * (size[j] - 1) * spacing[j]
    return Geometry(
        size=tuple(int(v) for v in size),
        spacing=tuple(float(v) for v in spacing),
        origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in np.stack(columns, axis=1).ravel()),
    )


def resample(
    array: np.ndarray,
    source: Geometry,
    target: Geometry,
    interpolation: str = "linear",
    default: float = 0.0,
    extrapolate: bool = False,
) -> np.ndarray:
    """Resample a (z, y, x) array, or (C, z, y, x) channels, from `source` onto `target` by
    physical coordinates. Labels: interpolation='nearest'. The dtype is kept (float32 for floats).
    Target voxels outside `source` get `default`, or with `extrapolate` the nearest source voxel's
    value (a model grid's rounded size can stop short of the scan's last slice)."""
    arr = np.asarray(array)
    if arr.ndim == 4:
        return np.stack([resample(c, source, target, interpolation, default, extrapolate) for c in arr])
    if source.same_grid(target):
        return arr.copy()
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    image = source.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(arr)))
    out = sitk.Resample(
        image,
        [int(s) for s in target.size],
        sitk.Transform(),
        _INTERPOLATORS[interpolation],
        target.origin,
        target.spacing,
        target.direction,
        float(default),
        image.GetPixelID(),
        extrapolate,
    )
    return sitk.GetArrayFromImage(out)
