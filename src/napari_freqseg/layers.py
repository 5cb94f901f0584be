"""Translate between core volumes and napari layer data tuples (no Qt, no napari import).

One place for how a volume becomes a layer: physical `scale`/`translate` in mm, axis labels,
and the exact source geometry and header in `metadata` so that saving gives back the same grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VolumeWriteError
from .io.dicom_seg import Algorithm, write_dicom_seg
from .io.geometry import Geometry
from .io.volume import Volume

AXIS_LABELS = ("z", "y", "x")
GEOMETRY_KEY = "freqseg_geometry"
#: A labels layer's metadata key: the model file that made it (the one to fine-tune on its corrections).
MODEL_PATH_KEY = "freqseg_model_path"


def geometry_kwargs(geometry: Geometry) -> dict[str, Any]:
    """Layer keyword arguments that place a (z, y, x) array on `geometry` in millimetres."""
    return {
        "scale": tuple(geometry.scale_zyx),
        "translate": tuple(geometry.translate_zyx),
        "units": ("mm", "mm", "mm"),
        "axis_labels": AXIS_LABELS,
    }


def image_layer_data(volume: Volume, name: str | None = None, **extra: Any) -> tuple[np.ndarray, dict, str]:
    kwargs = {"name": name or volume.name, "metadata": volume.metadata(), **geometry_kwargs(volume.geometry)}
    lo, hi = np.percentile(volume.array[:: max(1, volume.array.shape[0] // 16)], (0.5, 99.5))
    if hi > lo:
        kwargs["contrast_limits"] = (float(lo), float(hi))
    kwargs.update(extra)
    return volume.array, kwargs, "image"


def labels_layer_data(
    labels: np.ndarray, geometry: Geometry, name: str, metadata: dict | None = None, **extra: Any
) -> tuple[np.ndarray, dict, str]:
    """A Labels layer on exactly `geometry` (the grid of the image it belongs to)."""
    meta = {GEOMETRY_KEY: geometry.to_dict(), **(metadata or {})}
    kwargs = {"name": name, "metadata": meta, **geometry_kwargs(geometry), **extra}
    return np.asarray(labels).astype(label_dtype(labels), copy=False), kwargs, "labels"


def label_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest integer type that holds every label value: uint8 as a rule, never one that wraps
    (MM-WHS-style maps hold 205..850; a map with -1 stays signed)."""
    arr = np.asarray(labels)
    if arr.size == 0:
        return np.dtype(np.uint8)
    lo, hi = float(arr.min()), float(arr.max())
    for dtype in (np.uint8, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def placement_kwargs(layer: Any) -> dict[str, Any]:
    """A layer's placement in the viewer beyond scale and translate (rotate, shear, affine): a layer
    made from it gets these too, or it would not overlay it where they are not the identity."""
    return {"rotate": np.array(layer.rotate), "shear": np.array(layer.shear), "affine": np.array(layer.affine.affine_matrix)}


def uncertainty_layer_data(
    uncertainty: np.ndarray, geometry: Geometry, name: str, model_name: str, **extra: Any
) -> tuple[np.ndarray, dict, str]:
    """An Image layer of normalised predictive entropy (0..1) on exactly `geometry`, drawn in inferno
    over the scan: the one look of every uncertainty map (Segment, Correct's re-segment)."""
    meta = {GEOMETRY_KEY: geometry.to_dict(), "freqseg_model": model_name}
    kwargs = {
        "name": name,
        "colormap": "inferno",
        "blending": "additive",
        "contrast_limits": (0.0, 1.0),
        "metadata": meta,
        **geometry_kwargs(geometry),
        **extra,
    }
    return uncertainty, kwargs, "image"


def scan_grid_beneath(scan: Any, shape: tuple[int, ...], scale: Any, translate: Any) -> dict | None:
    """The stored grid of the scan layer `scan` when a layer of `shape`, `scale` and `translate`
    covers it voxel for voxel (napari's New Labels copies only these), else None."""
    stored = scan.metadata.get(GEOMETRY_KEY)
    if stored is None or Geometry.from_dict(stored).shape_zyx != tuple(shape):
        return None
    return stored if np.allclose(scan.scale, scale) and np.allclose(scan.translate, translate) else None


def full_resolution(data: Any, multiscale: bool) -> Any:
    """A layer's finest level: numpy reads napari's multiscale data as its coarsest level, on a
    coarser grid than the layer's `scale` says (labels or a saved file would land off the scan)."""
    return data[0] if multiscale else data


def geometry_from_layer(shape: tuple[int, ...], metadata: dict, scale: Any, translate: Any) -> Geometry:
    """The grid a layer's data lives on: the stored source geometry, else scale/translate."""
    stored = (metadata or {}).get(GEOMETRY_KEY)
    if stored is not None:
        geometry = Geometry.from_dict(stored)
        if geometry.shape_zyx == tuple(shape):
            return geometry
    return Geometry.from_scale_translate(tuple(shape), tuple(scale), tuple(translate))


def dicom_series_folder(metadata: dict | None) -> Path | None:
    """The DICOM series folder a layer's scan was read from (its metadata 'source'), or None."""
    source = (metadata or {}).get("source")
    return Path(str(source)) if source and Path(str(source)).is_dir() else None


def write_labels_seg_file(path: str | os.PathLike, data: Any, meta: dict) -> Path:
    """Write Labels layer data as a DICOM SEG at `path` over the DICOM series it was made on.

    `meta` is a layer data tuple's dict ('metadata', 'scale', 'translate'): 'source' names the series
    folder, its header's SeriesInstanceUID picks the series there, 'freqseg_classes' name the segments
    and 'freqseg_model' the algorithm. The one layer -> SEG path of the npe2 writer and the Cohort
    widget's Send to PACS. Raises VolumeWriteError (one line) when the layer has no DICOM series.
    """
    metadata = meta.get("metadata") or {}
    source = dicom_series_folder(metadata)
    if source is None:
        raise VolumeWriteError(f"{Path(path).name}: a DICOM SEG is written over the DICOM series the labels belong to; "
                               "this layer has none (save it as .nii.gz)")  # fmt: skip
    array = np.asarray(data)
    geometry = geometry_from_layer(array.shape, metadata, meta.get("scale", (1, 1, 1)), meta.get("translate", (0, 0, 0)))
    model = metadata.get("freqseg_model")
    return write_dicom_seg(array.astype(label_dtype(array), copy=False), geometry, source, path,  # negatives refused there
                           classes=list(metadata.get("freqseg_classes", [])), algorithm=Algorithm(str(model), "") if model else None,
                           series_uid=metadata.get("header", {}).get("0020|000e"))  # fmt: skip


def looks_like_labels(volume: Volume) -> bool:
    """Integer volume with few values whose file name says label/mask/seg, or a DICOM SEG."""
    from .io.cohort import LABEL_NAME  # local: keeps the import graph flat
    from .io.volume import volume_suffix

    if "freqseg_referenced_series" in volume.header:
        return True
    name = volume.source.rsplit("/", 1)[-1]
    suffix = volume_suffix(name) or ""
    bare = name[: len(name) - len(suffix)]
    if volume.array.dtype.kind not in "iub" or not LABEL_NAME.search(bare):
        return False
    sample = volume.array[:: max(1, volume.array.shape[0] // 8)]
    return len(np.unique(sample)) <= 64
