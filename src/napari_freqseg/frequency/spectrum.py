"""Amplitude/phase decomposition, centred log-amplitude views and radial/per-axis profiles.

Transforms use `norm="ortho"` on the rfftn half grid (see bands.py). Views and profiles meant for
comparing volumes report the amplitude of the continuous Fourier transform (the discrete sum
times the voxel volume, intensity·mm^d): the same object on two grids of different size or
spacing then has the same spectrum at the same physical frequency (cycles/mm).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .bands import fft_dims, frequency_axes, half_shape, hermitian_weights, nyquist, spatial_ndim


def modulus(spectrum: torch.Tensor) -> torch.Tensor:
    """|z| of a complex tensor as sqrt(re² + im²), in place on one new real tensor: several times
    faster on CPU than complex abs (amplitudes of image volumes are far from float32 overflow)."""
    parts = torch.view_as_real(spectrum)
    re, im = parts[..., 0], parts[..., 1]
    return re.square().addcmul_(im, im).sqrt_()


def amplitude_phase(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase of the spatial spectrum of an (N, C, *spatial) tensor (half grid)."""
    nd = spatial_ndim(x)
    spectrum = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho")
    return modulus(spectrum), spectrum.angle()


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


def physical_amplitude(x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Half-grid amplitude in continuous-transform units (computed once, shared by the views below)."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    return modulus(torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho")).mul_(physical_scale(shape, spacing))


def _rolled_copy(dest: torch.Tensor, src: torch.Tensor, shifts: dict[int, int]) -> None:
    """dest = torch.roll(src, shifts) with block copies straight into dest (no intermediate)."""
    pieces: list[tuple[tuple[slice, ...], tuple[slice, ...]]] = [((), ())]
    for d in range(src.dim()):
        n, k = src.shape[d], shifts.get(d - src.dim(), 0) % src.shape[d]
        if k == 0:
            pieces = [(a + (slice(None),), b + (slice(None),)) for a, b in pieces]
        else:
            pieces = [
                (a + da, b + db)
                for a, b in pieces
                for da, db in (((slice(k, n),), (slice(0, n - k),)), ((slice(0, k),), (slice(n - k, n),)))
            ]
    for d_sl, s_sl in pieces:
        dest[d_sl] = src[s_sl]


def centred_full(half: torch.Tensor, shape: Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
    """Full grid, zero frequency at index n//2 of each axis (fftshift), of a Hermitian-symmetric real
    quantity given on the half grid; the columns of negative last-axis frequency are the half grid
    mirrored on every axis. Written with block copies straight into `out` (new if None)."""
    nd = len(shape)
    n_last = shape[-1]
    cx = n_last // 2
    if out is None:
        out = torch.empty(*half.shape[:-1], n_last, dtype=half.dtype, device=half.device)
    plane_dims = fft_dims(nd)[:-1]
    _rolled_copy(out[..., cx:], half[..., : n_last - cx], {d: shape[d] // 2 for d in plane_dims})
    if cx:
        # k < 0 along the last axis: the value at -k, i.e. the half grid mirrored on every axis
        mirrored = half[..., 1 : cx + 1].flip(fft_dims(nd))
        _rolled_copy(out[..., :cx], mirrored, {d: shape[d] // 2 + 1 for d in plane_dims})
    return out


def centred_log_amplitude(
    x: torch.Tensor, spacing: Sequence[float] | None = None, *, amplitude: torch.Tensor | None = None
) -> torch.Tensor:
    """log10 of the amplitude, full grid, zero frequency at index n//2 of each axis (fftshift).

    `amplitude`: x's `physical_amplitude`, when already computed (it is left unchanged).
    """
    nd = spatial_ndim(x)
    amp = physical_amplitude(x, spacing) if amplitude is None else amplitude.clone()
    return _centred_log_in_place(amp, tuple(x.shape[-nd:]))


def _centred_log_in_place(amp: torch.Tensor, shape: tuple[int, ...], spent: torch.Tensor | None = None) -> torch.Tensor:
    """Centred log10 view of a half-grid amplitude, overwriting `amp` with its log on the way.

    Amplitudes below 1e-8 of each volume's largest are raised to it, so that exact zeros do not
    stretch the display range to -inf. `spent`: the complex spectrum the amplitude came from, no
    longer needed; its memory (always large enough) holds the view, which spares a large allocation.
    """
    nd = len(shape)
    floor = amp.flatten(-nd).amax(-1).clamp_min(1e-30).mul_(1e-8).reshape(*amp.shape[:-nd], *([1] * nd))
    size = (*amp.shape[:-nd], *shape)
    out = None
    if spent is not None and spent.is_contiguous():
        out = torch.view_as_real(spent).reshape(-1)[: math.prod(size)].view(size)
    return centred_full(torch.maximum(amp, floor, out=amp).log10_(), shape, out=out)


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


def _self_mirrored_columns(n_last: int) -> tuple[int, ...]:
    return (0, n_last // 2) if n_last % 2 == 0 else (0,)


@functools.lru_cache(maxsize=8)
def radial_bins(
    shape: tuple[int, ...], spacing: tuple[float, ...] | None, n_bins: int, f_max: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shell of every half-grid point (flat int32; n_bins = beyond f_max) and full-grid points per
    shell. Cached: a grid's shells depend only on its shape and spacing (read-only tensors)."""
    r = sum(f.to(torch.float32) ** 2 for f in frequency_axes(shape, spacing, device=device))
    idx = r.mul_((n_bins / f_max) ** 2).sqrt_().to(torch.int32).clamp_(max=n_bins).flatten()
    counts = torch.bincount(idx, minlength=n_bins + 1) * 2
    for col in _self_mirrored_columns(shape[-1]):
        counts -= torch.bincount(idx.reshape(half_shape(shape))[..., col].flatten(), minlength=n_bins + 1)
    return idx, counts


def radial_profile(
    x: torch.Tensor,
    spacing: Sequence[float] | None = None,
    n_bins: int | None = None,
    *,
    power: bool = False,
    f_max: float | None = None,
    amplitude: torch.Tensor | None = None,
) -> RadialProfile:
    """Radial amplitude (or power) profile of each sample and channel, in physical frequency units.

    Computed on the half grid with Hermitian weights, so it equals the full-grid profile.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    n_bins = n_bins or default_bins(shape, spacing)
    f_max = f_max or nyquist(spacing)
    amp = physical_amplitude(x, spacing) if amplitude is None else amplitude
    if power:
        amp = amp.square()
    key = tuple(float(v) for v in spacing) if spacing is not None else None
    idx, counts = radial_bins(shape, key, n_bins, float(f_max), x.device)
    values = amp.reshape(-1, idx.numel())
    planes = [
        (idx.reshape(half_shape(shape))[..., c].flatten(), amp[..., c].reshape(values.shape[0], -1))
        for c in _self_mirrored_columns(shape[-1])
    ]
    rows = []
    for i in range(values.shape[0]):  # 1-D bincount: much faster than index_add along dim 1
        # Hermitian weights: each half-grid column stands for two frequencies but k = 0 (and n/2, even n)
        row = 2.0 * torch.bincount(idx, weights=values[i], minlength=n_bins + 1)
        for plane_idx, plane_values in planes:
            row -= torch.bincount(plane_idx, weights=plane_values[i], minlength=n_bins + 1)
        rows.append(row)
    mean = torch.stack(rows)[:, :n_bins] / counts[:n_bins].to(torch.float64)
    edges = np.linspace(0.0, f_max, n_bins + 1)
    return RadialProfile(
        frequency=(edges[:-1] + edges[1:]) / 2,
        edges=edges,
        values=mean.reshape(*x.shape[:-nd], n_bins).cpu().numpy(),
        counts=counts[:n_bins].cpu().numpy().astype(np.float64),
        unit="cycles/mm" if spacing is not None else "cycles/voxel",
    )


def axis_profiles(
    x: torch.Tensor, spacing: Sequence[float] | None = None, *, amplitude: torch.Tensor | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial axis: (|f| for k = 0..n//2, mean amplitude over the other axes, shape (N, C, n//2+1))."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp = physical_amplitude(x, spacing) if amplitude is None else amplitude
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
            folded = torch.zeros(*line.shape[:-1], n // 2 + 1, dtype=line.dtype, device=x.device).index_add_(
                -1, k.to(x.device), line
            )
            hits = torch.zeros(n // 2 + 1).index_add_(0, k, torch.ones(n))
            mean = folded / (total / n) / hits.to(x.device)
        freq = np.arange(n // 2 + 1) / (n * (spacing[i] if spacing is not None else 1.0))
        out.append((freq, mean.cpu().numpy()))
    return out


def spectrum_and_profile(
    x: torch.Tensor, spacing: Sequence[float] | None = None, n_bins: int | None = None, *, with_axes: bool = False
) -> tuple[torch.Tensor, RadialProfile, list[tuple[np.ndarray, np.ndarray]]]:
    """Centred log10 amplitude, radial profile (and per-axis profiles) from a single rfftn: the
    Spectrum view's work."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    spectrum = torch.fft.rfftn(x, dim=fft_dims(nd), norm="ortho")
    amp = modulus(spectrum).mul_(physical_scale(shape, spacing))
    profile = radial_profile(x, spacing, n_bins, amplitude=amp)
    axes = axis_profiles(x, spacing, amplitude=amp) if with_axes else []
    return _centred_log_in_place(amp, shape, spent=spectrum), profile, axes


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
    log_amp, profile, axes = spectrum_and_profile(x, spacing, n_bins, with_axes=True)
    profile.values = profile.values[0, 0]
    return VolumeSpectrum(
        log_amplitude=log_amp[0, 0].cpu().numpy().astype(np.float32, copy=False),
        profile=profile,
        axes=[(f, v[0, 0]) for f, v in axes],
        spacing=spacing,
    )


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
    from scipy import ndimage  # here, not at the top: `freqseg segment` never needs it

    src_shape = centred.shape
    scale = [(ns * ss) / (nt * st) for ns, ss, nt, st in zip(src_shape, spacing, shape, target_spacing)]
    offset = [ns // 2 - m * (nt // 2) for ns, nt, m in zip(src_shape, shape, scale)]
    return ndimage.affine_transform(
        np.asarray(centred, dtype=np.float32),
        scale,
        offset=offset,
        output_shape=tuple(shape),
        order=1,
        mode="constant",
        cval=fill,
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
    amp = physical_amplitude(x, spacing)
    full = centred_full(amp, array.shape)[0, 0].numpy()
    on_grid = resample_centred(full, spacing, shape, target_spacing, fill=0.0)
    unshifted = np.fft.ifftshift(on_grid)[..., : shape[-1] // 2 + 1]
    return torch.from_numpy(np.ascontiguousarray(unshifted) / physical_scale(shape, target_spacing))[None, None]
