"""Decomposition, centred views and profiles against plain full-grid numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_freqseg.frequency import (
    amplitude_on_grid,
    amplitude_phase,
    axis_profiles,
    centred_log_amplitude,
    radial_profile,
    recompose,
    resample_centred,
    volume_spectrum,
)
from napari_freqseg.frequency.spectrum import full_from_half, physical_scale

SHAPES = [(7, 9, 10), (8, 6, 5), (5, 12, 9), (12, 13), (9, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_recompose_gives_the_input_back(shape: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, *shape) * 50 + 100
    amp, phase = amplitude_phase(x)
    y = recompose(amp, phase, shape)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y, x, rtol=0, atol=1e-5 * float(x.abs().max()))


@pytest.mark.parametrize("shape", SHAPES)
def test_half_grid_mirrors_to_the_full_amplitude(shape: tuple[int, ...]) -> None:
    x = torch.randn(1, 2, *shape)
    nd = len(shape)
    half, _ = amplitude_phase(x)
    full = torch.fft.fftn(x, dim=tuple(range(-nd, 0)), norm="ortho").abs()
    assert torch.allclose(full_from_half(half, shape[-1], nd), full, atol=1e-5)


def test_centred_log_amplitude_is_the_shifted_full_spectrum() -> None:
    shape, spacing = (9, 10, 7), (2.0, 0.8, 1.1)
    x = torch.randn(1, 1, *shape) + 3.0  # white noise: no amplitude near the float32 floor
    view = centred_log_amplitude(x, spacing)[0, 0].numpy()
    full = np.abs(np.fft.fftn(x[0, 0].numpy().astype(np.float64), norm="ortho")) * physical_scale(shape, spacing)
    expected = np.log10(np.fft.fftshift(full))
    assert view.shape == shape
    np.testing.assert_allclose(view, expected, atol=1e-3)
    assert np.unravel_index(np.argmax(view), shape) == tuple(n // 2 for n in shape)  # DC in the centre


def _numpy_radial(volume: np.ndarray, spacing: tuple[float, ...], n_bins: int, f_max: float) -> np.ndarray:
    """The plain way: full FFT, |f| on the full grid, mean per shell."""
    amp = np.abs(np.fft.fftn(volume.astype(np.float64), norm="ortho")) * physical_scale(volume.shape, spacing)
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d=s) for n, s in zip(volume.shape, spacing)], indexing="ij")
    r = np.sqrt(sum(f**2 for f in freqs))
    idx = np.minimum((r * n_bins / f_max).astype(int), n_bins)
    return np.array([amp[idx == b].mean() for b in range(n_bins)])


@pytest.mark.parametrize("shape,spacing", [((10, 9, 7), (2.5, 0.9, 0.7)), ((16, 11), (1.0, 0.5))])
def test_radial_profile_matches_the_full_grid_numpy_profile(shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    x = torch.randn(2, 1, *shape)
    prof = radial_profile(x, spacing, n_bins=5)
    assert prof.unit == "cycles/mm"
    assert prof.edges[-1] == pytest.approx(0.5 / min(spacing))
    for i in range(2):
        np.testing.assert_allclose(prof.values[i, 0], _numpy_radial(x[i, 0].numpy(), spacing, 5, prof.edges[-1]), rtol=1e-4)


def test_radial_profile_peaks_at_a_sinusoid_frequency_in_cycles_per_mm() -> None:
    shape, spacing = (8, 16, 64), (1.0, 1.0, 0.5)
    xs = np.arange(shape[-1]) * spacing[-1]
    wave = np.cos(2 * np.pi * 0.25 * xs)  # 0.25 cycles/mm along x
    x = torch.from_numpy(np.broadcast_to(wave, shape).copy()).float()[None, None]
    prof = radial_profile(x, spacing, n_bins=32)
    peak = prof.frequency[np.nanargmax(prof.values[0, 0])]
    assert abs(peak - 0.25) <= (prof.edges[1] - prof.edges[0])


def test_same_object_on_two_grids_has_the_same_profile() -> None:
    """Continuous-transform units: a smooth blob sampled at 1 mm and at 2 mm over the same field."""

    def blob(n: int, s: float) -> np.ndarray:
        c = (np.arange(n) - (n - 1) / 2) * s
        zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
        return np.exp(-(zz**2 + yy**2 + xx**2) / (2 * 6.0**2)).astype(np.float32)

    fine = radial_profile(torch.from_numpy(blob(64, 1.0))[None, None], (1.0,) * 3, n_bins=8, f_max=0.2)
    coarse = radial_profile(torch.from_numpy(blob(32, 2.0))[None, None], (2.0,) * 3, n_bins=8, f_max=0.2)
    np.testing.assert_allclose(fine.values[0, 0, :3], coarse.values[0, 0, :3], rtol=0.05)


def test_axis_profiles_find_the_axis_of_a_wave() -> None:
    shape, spacing = (32, 12, 10), (0.5, 1.0, 1.0)
    zs = np.arange(shape[0]) * spacing[0]
    wave = np.cos(2 * np.pi * 0.5 * zs)[:, None, None] * np.ones(shape)
    x = torch.from_numpy(wave).float()[None, None]
    (fz, vz), (fy, vy), (fx, vx) = axis_profiles(x, spacing)
    assert fz[np.argmax(vz[0, 0])] == pytest.approx(0.5)
    assert np.argmax(vy[0, 0]) == 0 and np.argmax(vx[0, 0]) == 0
    assert len(fz) == 17 and len(fx) == 6


def test_volume_spectrum_keeps_the_volume_shape() -> None:
    vol = np.random.default_rng(0).normal(100, 10, (11, 14, 9)).astype(np.float32)
    spec = volume_spectrum(vol, (2.0, 1.0, 1.0))
    assert spec.log_amplitude.shape == vol.shape and spec.log_amplitude.dtype == np.float32
    assert spec.profile.values.shape == spec.profile.frequency.shape
    assert len(spec.axes) == 3 and np.isfinite(spec.profile.values).all()


def test_resample_centred_on_the_same_grid_is_identity_and_maps_physical_frequency() -> None:
    spec = np.random.default_rng(1).random((9, 8, 7)).astype(np.float32)
    same = resample_centred(spec, (1.0, 2.0, 1.5), spec.shape, (1.0, 2.0, 1.5))
    np.testing.assert_allclose(same, spec, atol=1e-6)
    # a grid twice as long at the same spacing has half the frequency step: even indices coincide
    longer = resample_centred(spec, (1.0, 1.0, 1.0), (18, 16, 14), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(longer[9 - 4 * 2 :: 2, 8 - 4 * 2 :: 2, 7 - 3 * 2 :: 2][:9, :8, :7], spec, atol=1e-6)
    assert np.isnan(longer[0, 0, 0])


def test_amplitude_on_the_own_grid_is_the_own_amplitude() -> None:
    vol = np.random.default_rng(2).random((8, 9, 10)).astype(np.float32)
    amp = amplitude_on_grid(vol, (1.0, 1.0, 2.0), vol.shape, (1.0, 1.0, 2.0))
    own, _ = amplitude_phase(torch.from_numpy(vol)[None, None])
    assert torch.allclose(amp.float(), own, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_decomposition_on_cuda() -> None:
    x = torch.randn(2, 1, 9, 10, 11, device="cuda")
    amp, phase = amplitude_phase(x)
    assert torch.allclose(recompose(amp, phase, (9, 10, 11)), x, atol=1e-5)
    assert radial_profile(x, (1.0, 1.0, 1.0)).values.shape[:2] == (2, 1)
