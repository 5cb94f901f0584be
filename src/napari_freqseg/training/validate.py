"""Validation during training: sliding-window prediction and Dice on the source grid."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage
from torch import nn

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
    weighted sliding windows of `patch_size` (MONAI)."""
    was_training = network.training
    network.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    try:
        with torch.no_grad(), autocast:
            inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None].to(device)
            logits = sliding_window_inference(
                inp, tuple(patch_size), batch_size, network, overlap=overlap, mode="gaussian", padding_mode="constant"
            )
            probs = torch.softmax(logits.float(), dim=1)[0]
    finally:
        network.train(was_training)
    return probs.cpu().numpy()


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Each foreground class reduced to its largest 26-connected component."""
    out = np.zeros_like(labels)
    for cls in np.unique(labels):
        if cls == 0:
            continue
        comp, n = ndimage.label(labels == cls, structure=np.ones((3, 3, 3)))
        if n:
            sizes = np.bincount(comp.ravel())[1:]
            out[comp == int(sizes.argmax()) + 1] = cls
    return out


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> list[float]:
    """Dice of each foreground class (1.0 when both are empty)."""
    scores = []
    for cls in range(1, n_classes):
        p, t = pred == cls, truth == cls
        denom = int(p.sum()) + int(t.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int(np.logical_and(p, t).sum()) / denom)
    return scores


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
    labels = probs.argmax(0).astype(np.uint8)
    return keep_largest_component(labels) if largest_component else labels


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
        per_case[case.ref.case_id] = float(np.mean(dice_per_class(pred, case.source_label, n_classes)))
    return {"dice": float(np.mean(list(per_case.values()))), "cases": per_case}
