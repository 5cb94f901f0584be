"""Low-frequency box, radial shells and band filtering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_freqseg.frequency import band_pass, box_half_widths, box_slices, filter_bands, low_freq_box, shell_index
from napari_freqseg.frequency.bands import symmetrise_half


def _full_amp(x: torch.Tensor) -> torch.Tensor:
    nd = x.dim() - 2
    return torch.fft.fftn(x, dim=tuple(range(-nd, 0)), norm="ortho").abs()


def test_box_half_widths_are_per_axis_and_at_least_one_step() -> None:
    assert box_half_widths((64, 64, 32), 0.05) == (3, 3, 1)
    assert box_half_widths((64, 40), 0.01) == (1, 1)
    assert box_half_widths((3, 100), 0.5) == (1, 50)
    assert box_half_widths((64, 64), (0.1, 0.2)) == (6, 12)
    with pytest.raises(ValueError):
        box_half_widths((8, 8), 0.0)
    with pytest.raises(ValueError):
        box_half_widths((8, 8), 0.7)


@pytest.mark.parametrize("shape", [(9, 10, 7), (8, 6), (13, 12, 16)])
def test_half_box_is_the_full_box_seen_on_the_half_grid(shape: tuple[int, ...]) -> None:
    beta = 0.15
    full = low_freq_box(shape, beta, half=False)
    half = low_freq_box(shape, beta)
    assert torch.equal(half, full[..., : shape[-1] // 2 + 1])
    centred = np.fft.fftshift(full.numpy())
    expected = np.zeros(shape, dtype=bool)
    expected[box_slices(shape, beta)] = True
    assert np.array_equal(centred, expected)
    assert int(full.sum()) == int(np.prod([2 * b + 1 for b in box_half_widths(shape, beta)]))


def test_shells_partition_the_spectrum_by_radius() -> None:
    shape = (12, 10, 9)
    idx = shell_index(shape, 6, (1.0, 1.5, 2.0), half=False)
    assert idx.min() == 0 and idx.max() == 5
    assert idx.flatten()[0] == 0  # DC in the first shell
    x = torch.randn(1, 1, *shape)
    parts = [band_pass(x, (b, b), 6, (1.0, 1.5, 2.0)) for b in range(6)]
    assert torch.allclose(sum(parts), x, atol=1e-5)


def test_band_pass_zeroes_every_other_shell() -> None:
    shape = (16, 15, 14)
    x = torch.randn(1, 1, *shape)
    y = band_pass(x, (2, 3), 8)
    amp = _full_amp(y)[0, 0]
    idx = shell_index(shape, 8, half=False)
    outside = (idx < 2) | (idx > 3)
    assert float(amp[outside].max()) < 1e-5
    assert torch.allclose(amp[~outside], _full_amp(x)[0, 0][~outside], atol=1e-5)
    with pytest.raises(ValueError):
        band_pass(x, (3, 8), 8)


def test_filter_bands_per_sample_gains_scale_amplitude_and_keep_phase() -> None:
    shape = (10, 11)
    x = torch.randn(2, 1, *shape)
    gains = torch.tensor([[2.0, 1.0, 0.5, 0.25], [0.5, 0.5, 1.5, 1.0]])
    y = filter_bands(x, gains)
    idx = shell_index(shape, 4, half=False)
    fx = torch.fft.fftn(x, dim=(-2, -1))
    fy = torch.fft.fftn(y, dim=(-2, -1))
    for n in range(2):
        expected = fx[n, 0] * gains[n][idx]
        assert torch.allclose(fy[n, 0], expected, atol=1e-4)


@pytest.mark.parametrize("shape", [(8, 9, 10), (7, 6, 9), (12, 8)])
def test_symmetrised_random_mask_acts_as_a_full_grid_mask(shape: tuple[int, ...]) -> None:
    """A 0/1 mask drawn on the half grid, symmetrised, drops whole components: |Y| is 0 or |X|."""
    x = torch.randn(1, 1, *shape)
    nd = len(shape)
    dims = tuple(range(-nd, 0))
    u = torch.rand(1, 1, *shape[:-1], shape[-1] // 2 + 1, generator=torch.Generator().manual_seed(3))
    mask = (symmetrise_half(u, shape) > 0.5).float()
    y = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * mask, s=shape, dim=dims)
    ratio = (_full_amp(y) / _full_amp(x)).flatten()
    assert torch.all((ratio < 1e-4) | ((ratio - 1).abs() < 1e-4))
    assert 0.2 < float((ratio < 1e-4).float().mean()) < 0.8
