"""Frequency grids and band masks: the low-frequency box (one place for it) and radial shells.

Tensors are batched, (N, C, *spatial) with 2 or 3 spatial axes. Spectra are kept as the half
grid of `torch.fft.rfftn` over the spatial axes (the last axis holds frequencies 0..n//2): it is
about twice as fast and half the memory of the full grid, and any mask that depends only on
|frequency| (boxes, shells) is Hermitian-symmetric, so filtering on it gives real volumes exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch


def spatial_ndim(x: torch.Tensor) -> int:
    """Number of spatial axes of an (N, C, *spatial) tensor (2 or 3)."""
    nd = x.dim() - 2
    if nd not in (2, 3):
        raise ValueError(f"expected an (N, C, H, W) or (N, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    return nd


def fft_dims(ndim: int) -> tuple[int, ...]:
    """The spatial axes (the last `ndim`) that every transform works over."""
    return tuple(range(-ndim, 0))


def half_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Spatial shape of the rfftn half grid of a volume of `shape`."""
    return (*shape[:-1], shape[-1] // 2 + 1)


def frequency_axes(
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    *,
    half: bool = True,
    device: torch.device | str | None = None,
) -> list[torch.Tensor]:
    """Signed frequency of each grid axis, shaped to broadcast over the (half) grid.

    Units: cycles/mm with `spacing` (same axis order as `shape`), cycles/voxel without.
    """
    nd = len(shape)
    spacing = [1.0] * nd if spacing is None else [float(s) for s in spacing]
    axes = []
    for i, (n, s) in enumerate(zip(shape, spacing)):
        last = i == nd - 1
        f = torch.fft.rfftfreq(n, d=s, device=device) if (half and last) else torch.fft.fftfreq(n, d=s, device=device)
        view = [1] * nd
        view[i] = -1
        axes.append(f.reshape(view))
    return axes


def radial_frequency(
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    *,
    half: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """|f| at every point of the (half) grid, in cycles/mm (or cycles/voxel)."""
    axes = frequency_axes(shape, spacing, half=half, device=device)
    r2 = sum(a.to(torch.float32) ** 2 for a in axes)
    return torch.sqrt(r2.expand(half_shape(shape) if half else tuple(shape)))


def nyquist(spacing: Sequence[float] | None) -> float:
    """Highest frequency along the finest axis: the end of the radial range (cycles/mm or cycles/voxel)."""
    return 0.5 / (min(float(s) for s in spacing) if spacing is not None else 1.0)


def hermitian_weights(shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """How many full-grid frequencies each half-grid point stands for (1 or 2), along the last axis.

    Means and histograms over the half grid use these weights to equal those over the full grid.
    """
    n = shape[-1]
    w = torch.full((n // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    view = [1] * (len(shape) - 1) + [-1]
    return w.reshape(view)


def box_half_widths(shape: Sequence[int], beta: float | Sequence[float]) -> tuple[int, ...]:
    """Half-width, in frequency steps, of the low-frequency box along each axis.

    floor(beta * n) as in FDA, but per axis (FDA uses min(H, W) for both axes: a cube would cover
    very different physical bands of an anisotropic patch) and at least one step, so the box always
    holds the DC term and its neighbours (FDA's default beta = 0.01 is a lone DC term below 100 voxels).
    """
    betas = [float(beta)] * len(shape) if isinstance(beta, (int, float)) else [float(b) for b in beta]
    if len(betas) != len(shape) or any(not (0.0 < b <= 0.5) for b in betas):
        raise ValueError(f"beta must be in (0, 0.5] for each of the {len(shape)} axes, got {beta}")
    return tuple(min(n // 2, max(1, math.floor(b * n))) for n, b in zip(shape, betas))


def box_edge_frequency(shape: Sequence[int], spacing: Sequence[float] | None, beta: float | Sequence[float]) -> float:
    """Radius of the largest sphere inside the box: min over axes of b_i / (n_i · spacing_i)."""
    spacing = [1.0] * len(shape) if spacing is None else spacing
    return min(b / (n * float(s)) for b, n, s in zip(box_half_widths(shape, beta), shape, spacing))


def low_freq_box(
    shape: Sequence[int],
    beta: float | Sequence[float],
    *,
    half: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean mask of the centred low-frequency box |k_i| <= b_i on the (half) grid of `shape`."""
    widths = box_half_widths(shape, beta)
    inside = None
    for axis, (n, b) in zip(frequency_axes(shape, None, half=half, device=device), zip(shape, widths)):
        k = torch.round(axis * n).abs() <= b
        inside = k if inside is None else inside & k
    return inside.expand(half_shape(shape) if half else tuple(shape))


def box_slices(shape: Sequence[int], beta: float | Sequence[float]) -> tuple[slice, ...]:
    """The same box as index ranges of the centred (fftshift) full spectrum: [n//2 - b, n//2 + b]."""
    return tuple(slice(n // 2 - b, n // 2 + b + 1) for n, b in zip(shape, box_half_widths(shape, beta)))


def shell_edges(n_bands: int, f_max: float) -> torch.Tensor:
    """Edges of `n_bands` equal-width radial shells over [0, f_max]."""
    if n_bands < 1:
        raise ValueError("n_bands must be at least 1")
    return torch.linspace(0.0, float(f_max), n_bands + 1)


def shell_index(
    shape: Sequence[int],
    n_bands: int,
    spacing: Sequence[float] | None = None,
    *,
    half: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Shell (0 .. n_bands-1) of every grid point: equal-width shells of |f| from 0 to the Nyquist
    frequency of the finest axis; the corners beyond it belong to the last shell.

    Cached per grid (a training loop asks for the same patch grid every step): treat it as read-only.
    """
    key = tuple(float(s) for s in spacing) if spacing is not None else None
    return _shell_index(tuple(int(n) for n in shape), int(n_bands), key, half, torch.device(device or "cpu"))


@functools.lru_cache(maxsize=16)
def _shell_index(
    shape: tuple[int, ...], n_bands: int, spacing: tuple[float, ...] | None, half: bool, device: torch.device
) -> torch.Tensor:
    r = radial_frequency(shape, spacing, half=half, device=device)
    edges = shell_edges(n_bands, nyquist(spacing)).to(r.device)
    return torch.bucketize(r, edges[1:-1], right=True).clamp_(max=n_bands - 1)


def filter_bands(x: torch.Tensor, gains: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Multiply each radial shell of `x`'s spectrum by a real gain (phase kept).

    `gains` is (n_bands,) for the whole batch or (N, n_bands) per sample; the number of shells is
    its last size. Band-pass, band removal and F-ASE reweighting are all this one operation.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    dims = fft_dims(nd)
    idx = shell_index(shape, gains.shape[-1], spacing, device=x.device)
    g = gains.to(device=x.device, dtype=x.dtype)
    if g.dim() == 1:
        per_point = g[idx]
    else:
        per_point = g[:, idx].reshape(g.shape[0], 1, *idx.shape)
    spectrum = torch.fft.rfftn(x, dim=dims, norm="ortho")
    return torch.fft.irfftn(spectrum * per_point, s=shape, dim=dims, norm="ortho")


def band_pass(x: torch.Tensor, shells: tuple[int, int], n_bands: int, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Keep only shells first..last (inclusive) of `n_bands`; the rest of the spectrum is zeroed."""
    first, last = shells
    if not (0 <= first <= last < n_bands):
        raise ValueError(f"shell range {shells} is not within 0..{n_bands - 1}")
    gains = torch.zeros(n_bands)
    gains[first : last + 1] = 1.0
    return filter_bands(x, gains, spacing)


def symmetrise_half(values: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Make per-frequency values on the half grid Hermitian-consistent: on the planes k_last = 0
    (and n/2 for even n), which hold both k and -k, the value at -k is set to the value at k for
    one canonical half. Random masks drawn on the half grid then act as on the full grid."""
    nd = len(shape)
    out = values.clone()
    planes = [0] + ([shape[-1] // 2] if shape[-1] % 2 == 0 else [])
    plane_dims = tuple(range(-(nd - 1), 0))
    order = torch.arange(math.prod(shape[:-1]), device=values.device).reshape(shape[:-1])
    keep = order <= _mirror(order, plane_dims)
    for p in planes:
        plane = values[..., p]
        out[..., p] = torch.where(keep, plane, _mirror(plane, plane_dims))
    return out


def _mirror(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """t at -k along `dims` (index j -> (-j) mod n)."""
    for d in dims:
        t = t.flip(d).roll(1, d)
    return t
