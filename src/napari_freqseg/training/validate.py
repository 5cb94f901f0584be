"""Validation during training: sliding-window prediction and Dice on the source grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..inference import postprocess
from ..inference.predict import make_predictor
from ..inference.window import sliding_window
from ..io.resample import resample
from .data import PreparedCase


def predict_array(
    network: nn.Module,
    x: np.ndarray,
    patch_size: tuple[int, int, int],
    device: torch.device,
    overlap: float = 0.5,
    batch_size: int = 2,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Class probabilities (C, z, y, x) float32 of a normalised (z, y, x) volume, by Gaussian-
    weighted sliding windows of `patch_size`: the same window code as `freqseg segment`, so a
    model is validated as it will be used."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
            predictor = make_predictor(network, device, amp_dtype, channels_last=False)
            probs = sliding_window(
                predictor,
                inp,
                patch_size,
                overlap=overlap,
                batch_size=batch_size,
                device=device,
                stitch_device=torch.device("cpu"),
            )
    finally:
        network.train(was_training)
    return probs.numpy()


def segment_case(
    network: nn.Module,
    case: PreparedCase,
    patch_size: tuple[int, int, int],
    device: torch.device,
    overlap: float = 0.5,
    largest_component: bool = True,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """uint8 labels of a prepared case on its source grid (probabilities resampled, then argmax)."""
    probs = predict_array(network, case.x, patch_size, device, overlap, amp_dtype=amp_dtype)
    probs = resample(probs, case.geometry, case.source_geometry, "linear")
    labels = postprocess.class_argmax(torch.from_numpy(probs)).numpy()
    return postprocess.largest_component(labels) if largest_component else labels


def validate(
    network: nn.Module,
    cases: list[PreparedCase],
    n_classes: int,
    patch_size: tuple[int, int, int],
    device: torch.device,
    overlap: float = 0.5,
    largest_component: bool = True,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Mean foreground Dice over `cases` (on their source grids) and the Dice of each case."""
    per_case = {}
    for case in cases:
        pred = segment_case(network, case, patch_size, device, overlap, largest_component, amp_dtype)
        scores = [metrics.dice(pred == c, case.source_label == c) for c in range(1, n_classes)]
        per_case[case.ref.case_id] = float(np.mean(scores))
    return {"dice": float(np.mean(list(per_case.values()))), "cases": per_case}
