"""Amplitude/phase decomposition, centred log-amplitude views and radial/per-axis profiles.

Transforms use `norm="ortho"` on the rfftn half grid (see bands.py). Views and profiles meant for
comparing volumes report the amplitude of the continuous Fourier transform (the discrete sum
times the voxel volume, intensity·mm^d): the same object on two grids of different size or
spacing then has the same spectrum at the same physical frequency (cycles/mm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .bands import fft_dims, frequency_axes, half_shape, hermitian_weights, nyquist, radial_frequency, spatial_ndim


def amplitude_phase(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase of the spatial spectrum of an (N, C, *spatial) tensor (half grid)."""
    nd = spatial_ndim(x)
    spectrum = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho")
    return spectrum.abs(), spectrum.angle()


def recompose(amplitude: torch.Tensor, phase: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The real volume with this amplitude and phase; `shape` is the spatial shape to give back.

    recompose(*amplitude_phase(x), shape) returns x to float32 precision.
    """
    nd = len(shape)
    return torch.fft.irfftn(torch.polar(amplitude, phase), s=tuple(shape), dim=fft_dims(nd), norm="ortho")


def physical_scale(shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    """Factor from ortho amplitudes to continuous-transform amplitudes: sqrt(voxels) × voxel volume."""
    volume = math.prod(float(s) for s in spacing) if spacing is not None else 1.0
    return math.sqrt(math.prod(shape)) * volume


def full_from_half(half: torch.Tensor, n_last: int, ndim: int) -> torch.Tensor:
    """Full-grid values of a Hermitian-symmetric real quantity (amplitude) given on the half grid.

    The missing columns are the half-grid columns at -k: flipped (and shifted by one) on every axis.
    """
    m = n_last - n_last // 2 - 1
    mirrored = half[..., 1 : m + 1].flip(-1)
    for d in fft_dims(ndim)[:-1]:
        mirrored = mirrored.flip(d).roll(1, d)
    return torch.cat([half, mirrored], dim=-1)


def centred_log_amplitude(x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """log10 of the amplitude, full grid, zero frequency at index n//2 of each axis (fftshift)."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho").abs().mul_(physical_scale(shape, spacing))
    floor = amp.flatten(-nd).amax(-1).clamp_min(1e-30).mul_(1e-8).reshape(*amp.shape[:-nd], *([1] * nd))
    log_half = torch.maximum(amp, floor).log10_()
    return torch.fft.fftshift(full_from_half(log_half, shape[-1], nd), dim=fft_dims(nd))


@dataclass
class RadialProfile:
    """Mean amplitude (or power) in equal-width shells of |f|, from 0 to the finest axis' Nyquist."""

    frequency: np.ndarray  # (n_bins,) shell centres
    edges: np.ndarray  # (n_bins + 1,)
    values: np.ndarray  # (N, C, n_bins); NaN where a shell holds no grid point
    counts: np.ndarray  # (n_bins,) grid points per shell (full grid)
    unit: str  # "cycles/mm" or "cycles/voxel"


def default_bins(shape: Sequence[int], spacing: Sequence[float] | None) -> int:
    """One shell per frequency step along the finest axis: no shell is left empty."""
    if spacing is None:
        return max(1, max(shape) // 2)
    finest = min(spacing)
    return max(1, max(n for n, s in zip(shape, spacing) if math.isclose(s, finest)) // 2)


def radial_profile(
    x: torch.Tensor,
    spacing: Sequence[float] | None = None,
    n_bins: int | None = None,
    *,
    power: bool = False,
    f_max: float | None = None,
) -> RadialProfile:
    """Radial amplitude (or power) profile of each sample and channel, in physical frequency units.

    Computed on the half grid with Hermitian weights, so it equals the full-grid profile.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    n_bins = n_bins or default_bins(shape, spacing)
    f_max = f_max or nyquist(spacing)
    amp = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho").abs().mul_(physical_scale(shape, spacing))
    if power:
        amp.square_()
    r = radial_frequency(shape, spacing, device=x.device)
    idx = (r * (n_bins / f_max)).long().clamp_(max=n_bins).flatten()  # n_bins = beyond f_max: dropped
    w = hermitian_weights(shape, device=x.device).expand(half_shape(shape))
    values = amp.mul_(w).reshape(-1, idx.numel())
    sums = torch.zeros(values.shape[0], n_bins + 1, dtype=values.dtype, device=x.device).index_add_(1, idx, values)
    counts = torch.zeros(n_bins + 1, dtype=w.dtype, device=x.device).index_add_(0, idx, w.flatten())
    mean = sums[:, :n_bins] / counts[:n_bins]
    edges = np.linspace(0.0, f_max, n_bins + 1)
    return RadialProfile(
        frequency=(edges[:-1] + edges[1:]) / 2,
        edges=edges,
        values=mean.reshape(*x.shape[:-nd], n_bins).cpu().numpy(),
        counts=counts[:n_bins].cpu().numpy(),
        unit="cycles/mm" if spacing is not None else "cycles/voxel",
    )


def axis_profiles(x: torch.Tensor, spacing: Sequence[float] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial axis: (|f| for k = 0..n//2, mean amplitude over the other axes, shape (N, C, n//2+1))."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho").abs().mul_(physical_scale(shape, spacing))
    weighted = amp * hermitian_weights(shape, device=x.device)
    total = math.prod(shape)
    out = []
    axes = frequency_axes(shape, spacing, half=False)
    for i, n in enumerate(shape):
        d = -nd + i
        others = tuple(a for a in fft_dims(nd) if a != d)
        line = weighted.sum(dim=others)  # (N, C, len along axis i)
        if i == nd - 1:
            mean = line / (total / n) / hermitian_weights((n,), device=x.device).reshape(-1)
        else:
            k = torch.round(axes[i].flatten().abs() * n * (spacing[i] if spacing is not None else 1.0)).long()
            folded = torch.zeros(*line.shape[:-1], n // 2 + 1, dtype=line.dtype, device=x.device).index_add_(-1, k.to(x.device), line)
            hits = torch.zeros(n // 2 + 1).index_add_(0, k, torch.ones(n))
            mean = folded / (total / n) / hits.to(x.device)
        freq = np.arange(n // 2 + 1) / (n * (spacing[i] if spacing is not None else 1.0))
        out.append((freq, mean.cpu().numpy()))
    return out


@dataclass
class VolumeSpectrum:
    """What the Spectrum view shows for one (z, y, x) volume."""

    log_amplitude: np.ndarray  # centred log10 amplitude, same shape as the volume, float32
    profile: RadialProfile  # values (n_bins,)
    axes: list[tuple[np.ndarray, np.ndarray]]  # per axis (z, y, x): (|f|, mean amplitude)
    spacing: tuple[float, ...]  # (z, y, x) mm


def volume_spectrum(
    array: np.ndarray,
    spacing_zyx: Sequence[float],
    n_bins: int | None = None,
    device: torch.device | str = "cpu",
) -> VolumeSpectrum:
    """Centred log-amplitude, radial profile and per-axis profiles of a single volume."""
    x = torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)[None, None]
    spacing = tuple(float(s) for s in spacing_zyx)
    profile = radial_profile(x, spacing, n_bins)
    profile.values = profile.values[0, 0]
    axes = [(f, v[0, 0]) for f, v in axis_profiles(x, spacing)]
    log_amp = centred_log_amplitude(x, spacing)[0, 0].cpu().numpy().astype(np.float32, copy=False)
    return VolumeSpectrum(log_amplitude=log_amp, profile=profile, axes=axes, spacing=spacing)


def resample_centred(
    centred: np.ndarray,
    spacing: Sequence[float],
    shape: Sequence[int],
    target_spacing: Sequence[float],
    fill: float = float("nan"),
) -> np.ndarray:
    """A centred full spectrum sampled at the physical frequencies of another grid (linear).

    Index o of the target grid is the frequency (o - n//2) / (n · spacing); frequencies the source
    grid does not reach (above its Nyquist) get `fill`.
    """
    src_shape = centred.shape
    scale = [
        (ns * ss) / (nt * st) for ns, ss, nt, st in zip(src_shape, spacing, shape, target_spacing)
    ]
    offset = [ns // 2 - m * (nt // 2) for ns, nt, m in zip(src_shape, shape, scale)]
    return ndimage.affine_transform(
        np.asarray(centred, dtype=np.float32), scale, offset=offset, output_shape=tuple(shape), order=1,
        mode="constant", cval=fill,
    )


def amplitude_on_grid(
    array: np.ndarray,
    spacing: Sequence[float],
    shape: Sequence[int],
    target_spacing: Sequence[float],
) -> torch.Tensor:
    """Half-grid ortho amplitude that a volume on another grid (shape, target_spacing) would need to
    have this volume's continuous amplitude at each of its frequencies: amplitude mixing between
    volumes of different size or spacing. Frequencies beyond this volume's range get amplitude 0."""
    x = torch.as_tensor(np.asarray(array, dtype=np.float32))[None, None]
    nd = x.dim() - 2
    amp = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho").abs().mul_(physical_scale(array.shape, spacing))
    full = torch.fft.fftshift(full_from_half(amp, array.shape[-1], nd), dim=fft_dims(nd))[0, 0].numpy()
    on_grid = resample_centred(full, spacing, shape, target_spacing, fill=0.0)
    unshifted = np.fft.ifftshift(on_grid)[..., : shape[-1] // 2 + 1]
    return torch.from_numpy(np.ascontiguousarray(unshifted) / physical_scale(shape, target_spacing))[None, None]
