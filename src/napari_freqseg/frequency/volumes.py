"""Whole-volume entry points shared by the `freqseg` commands and the napari widgets.

A volume (z, y, x) with its geometry goes in, a volume on exactly the same grid comes out.
Amplitude mixing (FDA, TP-RAM) works on raw intensities. L-AAE and F-ASE need a network: they run
on the network's input (normalised intensities, on the model's grid when the model has one) and
only the change they make is mapped back, in raw intensity units, onto the source grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CancelledError, FreqsegError, GeometryMismatchError
from ..io.geometry import Geometry
from ..io.resample import model_grid, resample
from ..models.preprocess import Normalization
from .bands import filter_bands, low_freq_box
from .defaults import DEFAULT_BETA, METHODS, STRENGTH
from .fase import FASE, band_reliance
from .grad import Progress, eval_mode, input_gradient, tiled_logits
from .laae import LowFreqStyle, laae_attack, lowfreq_style
from .mixing import mix_amplitude, tp_ram_ratios
from .reliance import RelianceCurve, reliance_curve
from .spectrum import amplitude_on_grid

TILE = 96  # tile edge (voxels) for network passes over whole volumes


@dataclass
class ModelInput:
    """A network and how a volume becomes its input."""

    network: nn.Module
    normalize: Callable[[np.ndarray], np.ndarray] = field(default_factory=Normalization)
    spacing: tuple[float, float, float] | None = None  # (x, y, z) mm it expects; None = the volume's own
    orientation: str | None = None  # ITK code of its input axes; None = the volume's own
    name: str = "model"
    patch_size: tuple[int, int, int] | None = None  # (z, y, x) windows it segments with; None = 96³ tiles


@dataclass
class AugmentResult:
    array: np.ndarray  # float32, (z, y, x), on the input's grid, raw intensity units
    info: dict[str, Any]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]


def _check(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled")


def _affine_inverse(raw: np.ndarray, normed: np.ndarray) -> tuple[float, float]:
    """(shift, scale) with raw ≈ shift + scale·normed, fitted on voxels the normalisation did not clip."""
    r, z = raw.ravel().astype(np.float64), normed.ravel().astype(np.float64)
    inside = (z > z.min()) & (z < z.max())
    if inside.sum() < 2:
        inside = np.ones_like(z, dtype=bool)
    zc = z[inside] - z[inside].mean()
    denom = float((zc * zc).sum())
    scale = float((zc * (r[inside] - r[inside].mean())).sum() / denom) if denom > 0 else 1.0
    return float(r[inside].mean() - scale * z[inside].mean()), scale


class _ModelView:
    """A volume on the model's grid, normalised, and the way back for changes."""

    def __init__(self, array: np.ndarray, geometry: Geometry, model: ModelInput) -> None:
        self.source = geometry
        self.grid = geometry
        if model.spacing is not None or model.orientation is not None:
            self.grid = model_grid(geometry, model.spacing, model.orientation)
        self.resampled = not self.grid.same_grid(geometry)
        raw = resample(array, geometry, self.grid) if self.resampled else np.asarray(array, dtype=np.float32)
        self.z = np.asarray(model.normalize(raw), dtype=np.float32)
        self.shift, self.scale = _affine_inverse(raw, self.z)
        self.spacing_zyx = tuple(self.grid.spacing[::-1])

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """Labels on the source grid, brought to the model's grid."""
        if np.asarray(labels).shape != self.source.shape_zyx:
            raise GeometryMismatchError("labels do not have the volume's size")
        return resample(labels, self.source, self.grid, "nearest") if self.resampled else np.asarray(labels)

    def raw_change(self, z_new: np.ndarray) -> np.ndarray:
        """The change z_new - z in raw units, on the source grid."""
        delta = ((z_new - self.z) * self.scale).astype(np.float32)
        return resample(delta, self.grid, self.source) if self.resampled else delta


def _target(
    model: ModelInput, x: torch.Tensor, labels: np.ndarray | None, progress: Progress | None, cancelled: Callable[[], bool] | None
) -> torch.Tensor:
    """Labels, or the model's own prediction on the intact volume."""
    if labels is not None:
        return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[None]
    return whole_volume_logits(model, x, progress, cancelled).argmax(1)


def whole_volume_logits(
    model: ModelInput, x: torch.Tensor, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
) -> torch.Tensor:
    """(1, K, D, H, W) log-probabilities of the model over a whole (1, 1, D, H, W) volume, as
    `freqseg segment` computes them: the product's sliding window with the model's own patch and
    overlap 0.5 (an instance-norm model depends on its window); 96³ tiles for a model without one."""
    if model.patch_size is None:
        return tiled_logits(model.network, x, tile=TILE, progress=progress, cancelled=cancelled)
    from ..inference.window import sliding_window

    net = model.network
    with eval_mode(net), torch.no_grad():
        probs = sliding_window(
            lambda b: torch.softmax(net(b).float(), dim=1),
            x[0],
            model.patch_size,
            overlap=0.5,
            progress=progress,
            cancelled=cancelled,
        )
    return probs.clamp_min(1e-8).log()[None]


def augment_volume(
    array: np.ndarray,
    geometry: Geometry,
    method: str,
    *,
    reference: np.ndarray | None = None,
    reference_geometry: Geometry | None = None,
    model: ModelInput | None = None,
    labels: np.ndarray | None = None,
    beta: float | None = None,
    strength: float | None = None,
    seed: int = 0,
    direction: int = 1,
    steps: int = 1,
    n_bands: int = 8,
    stochastic: bool = False,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> AugmentResult:
    """One frequency augmentation of a whole volume; the result is on `geometry`'s grid.

    fda / tp-ram need `reference` (any grid: its amplitude is taken at this volume's physical
    frequencies); laae / fase need `model`, and use `labels` (on this grid) or else the model's own
    prediction as the target. direction: +1 raises the loss (L-AAE "up"), -1 lowers it.
    """
    if method not in METHODS:
        raise FreqsegError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    beta = DEFAULT_BETA[method] if beta is None else float(beta)
    strength = STRENGTH[method][1] if strength is None else float(strength)
    generator = torch.Generator().manual_seed(int(seed))
    info: dict[str, Any] = {"method": method, "beta": beta, "strength": strength, "seed": int(seed)}
    if method in ("fda", "tp-ram"):
        if reference is None or reference_geometry is None:
            raise FreqsegError(f"{method} needs a reference volume (another centre's scan)")
        x = _tensor(array)
        ref_amp = _reference_amplitude(reference, reference_geometry, geometry)
        if method == "fda":
            ratio = strength
        else:
            ratio = float(tp_ram_ratios(1, min(max(strength, 0.0), 1.0), generator)[0])
        _check(cancelled)
        out = mix_amplitude(x, ref_amp, beta, ratio)[0, 0].numpy()
        info["ratio"] = ratio
        if progress is not None:
            progress(1, 1, method)
        return AugmentResult(array=out.astype(np.float32), info=info)
    if model is None:
        raise FreqsegError(f"{method} needs a model")
    view = _ModelView(array, geometry, model)
    x = _tensor(view.z)
    target = _target(model, x, None if labels is None else view.labels(labels), progress, cancelled)
    info["target"] = "labels" if labels is not None else "model prediction"
    if method == "laae":
        spread = None
        if reference is not None and reference_geometry is not None:
            spread = _pair_spread(x, reference, reference_geometry, view, model, beta)
            info["spread"] = "input and reference"
        result = laae_attack(
            model.network,
            x,
            target,
            beta=beta,
            steps=max(1, int(steps)),
            step_size=strength,
            directions=torch.tensor([1.0 if direction >= 0 else -1.0]),
            spread=spread,
            tile=TILE,
            generator=generator,
            progress=progress,
            cancelled=cancelled,
        )
        z_new = result.x[0, 0].numpy()
        info.update(
            direction="up" if direction >= 0 else "down",
            steps=max(1, int(steps)),
            shift_mean=result.shift.mean.flatten().tolist(),
            shift_std=result.shift.std.flatten().tolist(),
        )
    else:
        grad = input_gradient(model.network, x, target, tile=TILE, progress=progress, cancelled=cancelled)
        fase = FASE(n_bands=n_bands, strength=strength, spacing=view.spacing_zyx)
        reliance = band_reliance(x, grad, n_bands, view.spacing_zyx)[0]
        fase.reliance = reliance / reliance.mean().clamp_min(1e-30)
        if stochastic:
            z_new = fase.apply(x, stochastic=True, generator=generator)[0, 0].numpy()
        else:
            z_new = filter_bands(x, fase.weights(), view.spacing_zyx)[0, 0].numpy()
        info.update(reliance=fase.reliance.tolist(), weights=fase.weights().tolist(), stochastic=stochastic)
    _check(cancelled)
    out = np.asarray(array, dtype=np.float32) + view.raw_change(z_new)
    return AugmentResult(array=out, info=info)


def _reference_amplitude(reference: np.ndarray, reference_geometry: Geometry, geometry: Geometry) -> torch.Tensor:
    """Half-grid amplitude of the reference for this grid (direct when the grids match in size and spacing)."""
    if reference.shape == geometry.shape_zyx and np.allclose(reference_geometry.spacing, geometry.spacing):
        return torch.fft.rfftn(_tensor(reference), dim=(-3, -2, -1), norm="ortho").abs()
    return amplitude_on_grid(reference, reference_geometry.spacing[::-1], geometry.shape_zyx, geometry.spacing[::-1])


def _pair_spread(
    x: torch.Tensor,
    reference: np.ndarray,
    reference_geometry: Geometry,
    view: _ModelView,
    model: ModelInput,
    beta: float,
) -> LowFreqStyle:
    """Spread of the low-frequency styles of the input and the reference (two sources), on the model's grid."""
    ref_norm = np.asarray(model.normalize(np.asarray(reference, dtype=np.float32)), dtype=np.float32)
    shape = tuple(x.shape[-3:])
    ref_amp = amplitude_on_grid(ref_norm, reference_geometry.spacing[::-1], shape, view.spacing_zyx)
    own_amp = torch.fft.rfftn(x, dim=(-3, -2, -1), norm="ortho").abs()
    box = low_freq_box(shape, beta)
    a, b = lowfreq_style(own_amp, box, shape), lowfreq_style(ref_amp.to(own_amp.dtype), box, shape)
    return LowFreqStyle(mean=torch.stack([a.mean, b.mean]).std(0) + 1e-6, std=torch.stack([a.std, b.std]).std(0) + 1e-6)


def volume_reliance(
    array: np.ndarray,
    geometry: Geometry,
    model: ModelInput,
    labels: np.ndarray | None = None,
    *,
    n_bands: int = 8,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RelianceCurve:
    """Per-band reliance curve of a model on one volume (bands in cycles/mm of the model's grid)."""
    view = _ModelView(array, geometry, model)
    x = _tensor(view.z)
    lab = None
    if labels is not None:
        lab = torch.from_numpy(np.ascontiguousarray(view.labels(labels), dtype=np.int64))[None]

    def predict(t: torch.Tensor) -> torch.Tensor:
        return whole_volume_logits(model, t, cancelled=cancelled)

    return reliance_curve(predict, x, lab, n_bands=n_bands, spacing=view.spacing_zyx, progress=progress, cancelled=cancelled)
