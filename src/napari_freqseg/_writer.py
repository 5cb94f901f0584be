"""npe2 writers: save a layer with exactly its source geometry (size, spacing, origin, direction)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FreqsegError
from .io.volume import write_volume
from .layers import geometry_from_layer, label_dtype, write_labels_seg_file


def _write(path: str, data: Any, meta: dict, dtype: np.dtype | None) -> list[str]:
    array = np.asarray(data)
    if array.ndim != 3:
        _notify(f"{path}: only 3D layers can be saved as volumes (this one is {array.ndim}D)")
        return []
    geometry = geometry_from_layer(
        array.shape, meta.get("metadata", {}), meta.get("scale", (1, 1, 1)), meta.get("translate", (0, 0, 0))
    )
    header = meta.get("metadata", {}).get("header", {})
    try:
        out = write_volume(array if dtype is None else array.astype(dtype), geometry, path, header=header)
    except FreqsegError as exc:
        _notify(str(exc))
        return []
    return [str(out)]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer as uint8, or the smallest integer type that holds its values (uint16
    beyond 255, int32 with negative values): never wrapped."""
    arr = np.asarray(data)
    return _write(path, arr, meta, label_dtype(arr))


def write_labels_seg(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer of a DICOM series as a DICOM SEG over that series (segments named by
    the model's classes, the model named as the algorithm); see layers.write_labels_seg_file."""
    try:
        out = write_labels_seg_file(path, data, meta)
    except FreqsegError as exc:
        _notify(str(exc))
        return []
    return [str(out)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer with its own dtype (float64 is stored as float32)."""
    return _write(path, data, meta, None)


def _notify(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
