"""Sliding-window segmentation of whole scans on GPU or CPU, with uncertainty. No Qt, no napari."""

from .device import amp_dtype, resolve_device, with_stitch_fallback
from .predict import Prediction, estimate_memory, make_predictor, model_input, predict_volume
from .window import count_windows, sliding_window, window_starts

__all__ = [
    "Prediction",
    "amp_dtype",
    "count_windows",
    "estimate_memory",
    "make_predictor",
    "model_input",
    "predict_volume",
    "resolve_device",
    "sliding_window",
    "window_starts",
    "with_stitch_fallback",
]
