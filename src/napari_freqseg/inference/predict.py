"""Segment a whole scan with a model: normalise, go to the model grid, slide, come back, clean up.

`predict_volume` is what the CLI, the Segment widget and the correction loop call. It applies the
model file's intensity normalisation to the scan as given, resamples to the model's orientation
and spacing, runs the sliding window (optionally with flip test-time augmentation and MC dropout),
maps class probabilities back to the scan's exact grid and returns uint8 labels, plus an optional
uncertainty map (normalised predictive entropy) and per-slice uncertainty scores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from ..errors import CancelledError, ModelError, ResourceError, VolumeReadError
from ..harmonize import HARMONIZE_BETA, MODES, SpectrumHarmonized, match_landmarks, model_style
from ..io.geometry import Geometry, fmt_size
from ..io.resample import model_grid, resample
from ..io.volume import Volume, replace_nonfinite
from ..models.modelfile import ModelMeta
from . import postprocess
from .device import amp_dtype, autocast, resolve_device, with_stitch_fallback
from .fast import inference_copy
from .postprocess import normalized_entropy, slice_scores
from .window import Predictor, ProgressFn, count_windows, sliding_window

#: Flip test-time augmentation: identity and one flip per spatial axis of (B, C, D, H, W).
FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))
UNCERTAINTY_DTYPES = {"float16": np.float16, "float32": np.float32}
GIB = 1024**3


@dataclass
class Prediction:
    """A segmentation on the source grid: uint8 labels, optional uncertainty, per-slice scores."""

    labels: np.ndarray  # (z, y, x) uint8, 0 = background, i = classes[i]
    geometry: Geometry  # the source grid, exactly
    classes: list[str]
    uncertainty: np.ndarray | None = None  # (z, y, x) float16/float32 in [0, 1]
    slice_scores: dict[str, np.ndarray] = field(default_factory=dict)  # 'z'/'y'/'x' -> mean uncertainty per slice
    info: dict[str, Any] = field(default_factory=dict)  # device, precision, windows, seconds, notes


def model_input(volume: Volume, meta: ModelMeta) -> tuple[np.ndarray, Geometry]:
    """The scan as the network sees it: normalised on the source grid with the model's
    normalisation, then resampled (linear) to the model grid. Returns (float32 array, grid).
    NaN/Inf voxels (an array that did not come through `read_volume`, e.g. a napari layer) count
    as the lowest finite value, as the reader makes them: one would make every voxel NaN."""
    grid = model_grid(volume.geometry, meta.spacing, meta.orientation)
    x = meta.norm(replace_nonfinite(volume.array, volume.name if volume.source else "the scan")[0])
    if not grid.same_grid(volume.geometry):
        x = resample(x, volume.geometry, grid, "linear")
    return x, grid


def check_model(network: nn.Module, meta: ModelMeta) -> None:
    """Refuse, with a one-line message, a model that cannot run on a single-channel scan."""
    in_channels = int(getattr(network, "in_channels", meta.in_channels))
    if in_channels != 1 or meta.in_channels != 1:
        raise ModelError(f"model {meta.name!r} expects {max(in_channels, meta.in_channels)} input channels; a scan has 1")
    n_out = int(getattr(network, "n_classes", meta.n_classes))
    if n_out != meta.n_classes:
        raise ModelError(f"model {meta.name!r} outputs {n_out} classes but its metadata names {meta.n_classes}")
    if not 2 <= meta.n_classes <= 255:
        raise ModelError(f"model {meta.name!r} has {meta.n_classes} classes; 2 to 255 can be segmented")
    divisor = int(getattr(network, "size_divisor", 1))
    if len(meta.patch_size) != 3 or any(int(p) <= 0 or int(p) % divisor for p in meta.patch_size):
        raise ModelError(f"model {meta.name!r}: patch size {meta.patch_size} must be 3 positive multiples of {divisor}")


def estimate_memory(
    source: Geometry, grid: Geometry, meta: ModelMeta, network: nn.Module, batch_size: int, uncertainty: bool
) -> int:
    """Bytes of host memory a prediction needs at its peak, roughly (input copies, the float32
    accumulator, the way back to the source grid, window batches and activations)."""
    n_src = math.prod(source.size)
    n_grid = math.prod(max(s, p) for s, p in zip(grid.shape_zyx, meta.patch_size))
    k = meta.n_classes
    total = 4 * n_src + 4 * n_grid + 4 * k * n_grid + n_grid
    if not grid.same_grid(source):
        total += 9 * n_src + n_src // 8 + n_src
    if uncertainty:
        total += 4 * n_grid + 4 * n_src
    patch = math.prod(int(p) for p in meta.patch_size)
    features = int(getattr(network, "feature_channels", 16))
    total += batch_size * patch * 4 * (1 + 2 * k + 6 * features)
    return int(total)


def _available_memory() -> int:
    return int(psutil.virtual_memory().available)


def make_predictor(
    network: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    flips: tuple[tuple[int, ...], ...] = ((),),
    passes: int = 1,
) -> Predictor:
    """Windows -> mean softmax over flips × stochastic passes (float32)."""
    n = len(flips) * passes

    def predict(x: torch.Tensor) -> torch.Tensor:
        mean: torch.Tensor | None = None
        for flip in flips:
            xf = x.flip(flip) if flip else x
            if channels_last:
                xf = xf.contiguous(memory_format=torch.channels_last_3d)
            for _ in range(passes):
                with autocast(device, dtype):
                    logits = network(xf)
                p = torch.softmax(logits.float(), dim=1)
                if flip:
                    p = p.flip(flip)
                mean = p if mean is None else mean.add_(p)
        return mean.div_(n) if n > 1 else mean

    return predict


def _check_args(overlap: float, uncertainty: str | None, uncertainty_dtype: str, mc_dropout: int, batch_size: int) -> None:
    if not 0.0 <= overlap < 1.0:
        raise ModelError(f"overlap must be at least 0 and below 1, got {overlap}")
    if uncertainty not in (None, "entropy"):
        raise ModelError(f"unknown uncertainty {uncertainty!r} (use 'entropy')")
    if uncertainty_dtype not in UNCERTAINTY_DTYPES:
        raise ModelError(f"uncertainty dtype must be float16 or float32, not {uncertainty_dtype!r}")
    if mc_dropout < 0 or batch_size < 1:
        raise ModelError("mc_dropout must be ≥ 0 and batch_size ≥ 1")


def predict_volume(
    model: nn.Module,
    meta: ModelMeta,
    volume: Volume,
    *,
    device: str | torch.device = "auto",
    overlap: float = 0.5,
    tta: bool = False,
    uncertainty: str | None = None,
    uncertainty_dtype: str = "float16",
    mc_dropout: int = 0,
    largest_component: bool = True,
    batch_size: int = 2,
    precision: str = "auto",
    memory_limit: int | None = None,
    harmonize: str = "off",
    harmonize_beta: float = HARMONIZE_BETA,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Prediction:
    """Segment `volume` with `model` described by `meta`; labels come back on the volume's grid.

    tta: average over flips along each axis. mc_dropout: number of stochastic passes with dropout
    on (0 = off). uncertainty='entropy': predictive entropy of the averaged probabilities, divided
    by log K. memory_limit: bytes of host memory the job may use (default: 90% of what is free);
    a larger estimate is refused before any work. harmonize: map the scan to the model's training
    style first (harmonize.MODES: 'intensity' landmarks, 'spectrum' window FDA, 'both'; needs a
    model that carries its style). Raises CancelledError between window batches.
    """
    start = time.perf_counter()
    _check_args(overlap, uncertainty, uncertainty_dtype, mc_dropout, batch_size)
    check_model(model, meta)
    if harmonize not in MODES:
        raise ValueError(f"harmonize must be one of {', '.join(MODES)}, not {harmonize!r}")
    style = model_style(meta) if harmonize != "off" else None
    if mc_dropout and not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        raise ModelError(f"model {meta.name!r} has no dropout layers: use flip TTA for uncertainty instead")
    dev = resolve_device(device)
    dtype = amp_dtype(dev, precision)
    source = volume.geometry
    if volume.array.ndim != 3 or tuple(volume.array.shape) != source.shape_zyx:
        raise ModelError(f"volume array {tuple(volume.array.shape)} does not match its grid {source.shape_zyx}")
    grid = model_grid(source, meta.spacing, meta.orientation)
    need = estimate_memory(source, grid, meta, model, batch_size, uncertainty is not None)
    limit = memory_limit if memory_limit is not None else int(0.9 * _available_memory())
    if need > limit:
        raise ResourceError(
            f"segmenting this {fmt_size(source.size)} volume needs about {need / GIB:.1f} GiB of memory, "
            f"more than the {limit / GIB:.1f} GiB available: crop the scan or use a model with a coarser spacing"
        )
    patch = [int(p) for p in meta.patch_size]
    n_windows = count_windows(grid.shape_zyx, patch, overlap)
    n_batches = math.ceil(n_windows / batch_size)
    total = n_batches + 2
    report = progress or (lambda done, tot, msg: None)
    is_cancelled = cancelled or (lambda: False)
    report(0, total, "preparing the scan")
    x, grid = model_input(volume, meta)
    if style is not None and not float(np.ptp(x)) > 0:
        raise VolumeReadError("the scan has one intensity everywhere: there is no contrast to harmonise")
    if style is not None and harmonize in ("intensity", "both"):
        x = match_landmarks(x, style)
    if is_cancelled():
        raise CancelledError("cancelled")
    net, channels_last = inference_copy(model, dev, mc_dropout=mc_dropout > 0, dtype=dtype)
    if style is not None and harmonize in ("spectrum", "both"):
        net = SpectrumHarmonized(net, style, harmonize_beta).to(dev)
    predictor = make_predictor(net, dev, dtype, channels_last, FLIPS if tta else ((),), max(1, mc_dropout))
    notes: list[str] = []
    if any(s < p for s, p in zip(grid.shape_zyx, patch)):
        notes.append(f"volume {fmt_size(grid.shape_zyx[::-1])} smaller than the patch: padded")
    want_probs = not grid.same_grid(source)

    def run(stitch_device: torch.device) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(labels on the model grid when it is the source grid, else probabilities; entropy)."""
        with torch.inference_mode():
            probs = sliding_window(
                predictor,
                torch.from_numpy(x)[None],
                patch,
                overlap=overlap,
                batch_size=batch_size,
                device=dev,
                stitch_device=stitch_device,
                progress=lambda d, t, m: report(1 + d, total, m),
                cancelled=is_cancelled,
            )
            entropy = normalized_entropy(probs).cpu().numpy() if uncertainty else None
            if want_probs:
                return None, probs.cpu().numpy(), entropy
            return postprocess.class_argmax(probs).cpu().numpy(), None, entropy

    labels, probs, entropy = with_stitch_fallback(run, dev, notes)
    _stop_if(is_cancelled)
    report(total - 1, total, "mapping back to the scan grid")
    if probs is not None:
        labels = _labels_on_source(probs, grid, source, is_cancelled)
        del probs
    _stop_if(is_cancelled)
    if largest_component:
        labels = postprocess.largest_component(labels)
    u_map, scores = None, {}
    if entropy is not None:
        _stop_if(is_cancelled)
        if want_probs:
            entropy = resample(entropy, grid, source, "linear", extrapolate=True)
        u_map = entropy.astype(UNCERTAINTY_DTYPES[uncertainty_dtype], copy=False)
        scores = slice_scores(entropy)
    report(total, total, "done")
    info = {
        "model": meta.name,
        "device": str(dev),
        "precision": str(dtype).replace("torch.", "") if dtype else "float32",
        "overlap": overlap,
        "tta": tta,
        "mc_dropout": mc_dropout,
        "harmonize": harmonize,
        "windows": n_windows,
        "model_grid": list(grid.size),
        "seconds": round(time.perf_counter() - start, 3),
        "notes": notes,
    }
    return Prediction(labels, source, list(meta.classes), u_map, scores, info)


def _stop_if(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise CancelledError("segmentation cancelled")


def _labels_on_source(
    probs: np.ndarray, grid: Geometry, source: Geometry, cancelled: Callable[[], bool] = lambda: False
) -> np.ndarray:
    """Argmax of class probabilities resampled (linear) onto the source grid, one class at a time,
    so only two float32 maps of the source size exist at once (Cancel is checked between classes)."""
    best = resample(probs[0], grid, source, "linear", extrapolate=True)
    labels = np.zeros(source.shape_zyx, dtype=np.uint8)
    for c in range(1, probs.shape[0]):
        _stop_if(cancelled)
        pc = resample(probs[c], grid, source, "linear", extrapolate=True)
        better = pc > best
        labels[better] = c
        np.maximum(best, pc, out=best)
    return labels
