"""Translate between core volumes and napari layer data tuples (no Qt, no napari import).

One place for how a volume becomes a layer: physical `scale`/`translate` in mm, axis labels,
and the exact source geometry and header in `metadata` so that saving gives back the same grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .io.geometry import Geometry
from .io.volume import Volume

AXIS_LABELS = ("z", "y", "x")
GEOMETRY_KEY = "freqseg_geometry"


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
    return np.asarray(labels).astype(np.uint8, copy=False), kwargs, "labels"


def uncertainty_layer_data(uncertainty: np.ndarray, geometry: Geometry, name: str, model_name: str, **extra: Any
                           ) -> tuple[np.ndarray, dict, str]:
    """An Image layer of normalised predictive entropy (0..1) on exactly `geometry`, drawn in inferno
    over the scan: the one look of every uncertainty map (Segment, Correct's re-segment)."""
    meta = {GEOMETRY_KEY: geometry.to_dict(), "freqseg_model": model_name}
    kwargs = {"name": name, "colormap": "inferno", "blending": "additive", "contrast_limits": (0.0, 1.0),
              "metadata": meta, **geometry_kwargs(geometry), **extra}
    return uncertainty, kwargs, "image"


def geometry_from_layer(shape: tuple[int, ...], metadata: dict, scale: Any, translate: Any) -> Geometry:
    """The grid a layer's data lives on: the stored source geometry, else scale/translate."""
    stored = (metadata or {}).get(GEOMETRY_KEY)
    if stored is not None:
        geometry = Geometry.from_dict(stored)
        if geometry.shape_zyx == tuple(shape):
            return geometry
    return Geometry.from_scale_translate(tuple(shape), tuple(scale), tuple(translate))


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
