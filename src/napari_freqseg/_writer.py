"""npe2 writers: save a layer with exactly its source geometry (size, spacing, origin, direction)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FreqsegError
from .io.volume import write_volume
from .layers import GEOMETRY_KEY, full_resolution, geometry_from_layer, label_dtype, scan_grid_beneath, write_labels_seg_file


def _write(path: str, array: np.ndarray, meta: dict, dtype: np.dtype | None) -> list[str]:
    if array.ndim != 3:
        _notify(f"{path}: only 3D layers can be saved as volumes (this one is {array.ndim}D)")
        return []
    scale, translate = meta.get("scale", (1, 1, 1)), meta.get("translate", (0, 0, 0))
    metadata = meta.get("metadata") or {}
    if GEOMETRY_KEY not in metadata:
        metadata = {**_scan_beneath(array.shape, scale, translate), **metadata}
    geometry = geometry_from_layer(array.shape, metadata, scale, translate)
    header = metadata.get("header", {})
    try:
        out = write_volume(array if dtype is None else array.astype(dtype), geometry, path, header=header)
    except FreqsegError as exc:
        _notify(str(exc))
        return []
    if _moved_in_viewer(meta):
        from napari.utils.notifications import show_warning

        show_warning(f"{out.name}: saved on its voxel grid; the layer's rotate/shear/affine in the viewer are not in the file")
    return [str(out)]


def _moved_in_viewer(meta: dict) -> bool:
    """True when the layer's rotate, shear or affine is not the identity (a placement only napari knows)."""
    checks = (("rotate", np.eye(3)), ("shear", np.zeros(3)), ("affine", np.eye(4)))
    return any(key in meta and not np.allclose(np.asarray(meta[key], float), ident) for key, ident in checks)


def _scan_beneath(shape: tuple[int, ...], scale: Any, translate: Any) -> dict:
    """The stored geometry and header of the one scan in the viewer that a layer without metadata
    covers voxel for voxel (napari's New Labels copies only its shape, scale and translate): the
    scan's direction, else lost, keeps the labels on the scan in other viewers. {} when none or
    several disagree."""
    from napari import current_viewer

    viewer = current_viewer()
    found: dict[str, dict] = {}
    for layer in viewer.layers if viewer is not None else []:
        stored = scan_grid_beneath(layer, shape, scale, translate)
        if stored is not None:
            found[repr(stored)] = {GEOMETRY_KEY: stored, "header": layer.metadata.get("header", {})}
    return next(iter(found.values())) if len(found) == 1 else {}


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer as uint8, or the smallest integer type that holds its values (uint16
    beyond 255, int32 with negative values): never wrapped."""
    arr = _finest(data, meta)
    return _write(path, arr, meta, label_dtype(arr))


def write_labels_seg(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer of a DICOM series as a DICOM SEG over that series (segments named by
    the model's classes, the model named as the algorithm); see layers.write_labels_seg_file."""
    try:
        out = write_labels_seg_file(path, _finest(data, meta), meta)
    except FreqsegError as exc:
        _notify(str(exc))
        return []
    return [str(out)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer with its own dtype (float64 is stored as float32)."""
    return _write(path, _finest(data, meta), meta, None)


def _finest(data: Any, meta: dict) -> np.ndarray:
    """The layer's full-resolution array (level 0 of a multiscale layer)."""
    return np.asarray(full_resolution(data, meta.get("multiscale", False)))


def _notify(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
