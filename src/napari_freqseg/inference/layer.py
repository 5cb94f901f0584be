"""Segment a napari image layer's data with a model file: the work of the Segment widget and of
the Correct widget's Re-segment, without Qt or napari (layer placement arrives as plain values)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeReadError
from ..io.volume import Volume
from ..layers import geometry_from_layer
from ..models.modelfile import load_model
from .predict import Prediction, predict_volume

#: Quality presets: window overlap and flip test-time augmentation.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"overlap": 0.25, "tta": False},
    "accurate": {"overlap": 0.5, "tta": True},
}


@dataclass
class SegmentResult:
    """What the worker hands back to the GUI thread."""

    prediction: Prediction
    model_name: str
    volumes_ml: dict[str, float]  # class name -> volume in millilitres
    model_path: str = ""  # the model file that made it (the Correct widget fine-tunes that one)


def segment_layer(
    data: Any,
    layer_meta: dict[str, Any],
    model_path: Path,
    device: str,
    preset: str,
    uncertainty: bool,
    largest_component: bool,
    harmonize: str = "off",
    progress: Any = None,
    cancelled: Any = None,
) -> SegmentResult:
    """The widget's work, without Qt: an image layer's data and placement -> a Prediction."""
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeReadError(f"the image layer is {array.ndim}D; a 3D volume is needed")
    geometry = geometry_from_layer(array.shape, layer_meta["metadata"], layer_meta["scale"], layer_meta["translate"])
    network, meta = load_model(model_path)
    prediction = predict_volume(
        network,
        meta,
        Volume(array=array, geometry=geometry),
        device=device,
        uncertainty="entropy" if uncertainty else None,
        largest_component=largest_component,
        harmonize=harmonize,
        progress=progress,
        cancelled=cancelled,
        **PRESETS[preset],
    )
    counts = np.bincount(prediction.labels.ravel(), minlength=len(prediction.classes))
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    volumes = {name: float(counts[i]) * voxel_ml for i, name in enumerate(prediction.classes) if i > 0}
    return SegmentResult(prediction, meta.name, volumes, str(Path(model_path).resolve()))
