"""FDA and TP-RAM: only the low-frequency box amplitude changes; phase is kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_freqseg.frequency import amplitude_on_grid, fda, low_freq_box, mix_amplitude, tp_ram, tp_ram_ratios


def _full(x: torch.Tensor) -> torch.Tensor:
    nd = x.dim() - 2
    return torch.fft.fftn(x.double(), dim=tuple(range(-nd, 0)), norm="ortho")


def _raw(shape: tuple[int, ...], n: int = 2, seed: int = 0, level: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (level + 30 * torch.rand(n, 1, *shape, generator=g)).float()


def _phase_kept(x: torch.Tensor, y: torch.Tensor, where: torch.Tensor) -> bool:
    fx, fy = _full(x), _full(y)
    strong = where & (fx.abs() > 1e-3 * fx.abs().amax()) & (fy.abs() > 1e-3 * fy.abs().amax())
    diff = torch.angle(fy * fx.conj())[strong]
    return bool(diff.abs().max() < 1e-3)


@pytest.mark.parametrize("shape", [(16, 15, 9), (9, 20, 12), (17, 24)])
def test_fda_replaces_box_amplitude_only_and_keeps_phase(shape: tuple[int, ...]) -> None:
    x, ref = _raw(shape, seed=1), _raw(shape, seed=2, level=40.0)
    beta = 0.1
    y = fda(x, ref, beta=beta)
    box = low_freq_box(shape, beta, half=False)
    fx, fy, fr = _full(x).abs(), _full(y).abs(), _full(ref).abs()
    assert torch.allclose(fy[..., ~box], fx[..., ~box], rtol=1e-4, atol=1e-3)
    assert torch.allclose(fy[..., box], fr[..., box], rtol=1e-4, atol=1e-3)
    assert _phase_kept(x, y, torch.ones(shape, dtype=torch.bool))
    assert abs(float(y.mean()) - float(ref.mean())) < 1e-2 * float(ref.mean())  # DC came from the reference


def test_mixing_ratio_interpolates_box_amplitudes_per_sample() -> None:
    shape = (12, 14, 10)
    x, ref = _raw(shape, seed=3), _raw(shape, n=1, seed=4, level=20.0)
    ratio = torch.tensor([0.25, 0.75])
    from napari_freqseg.frequency import amplitude_phase

    y = mix_amplitude(x, amplitude_phase(ref)[0], 0.1, ratio)
    box = low_freq_box(shape, 0.1, half=False)
    fx, fy, fr = _full(x).abs(), _full(y).abs(), _full(ref).abs()
    for i, r in enumerate(ratio.tolist()):
        expected = (1 - r) * fx[i, 0][box] + r * fr[0, 0][box]
        assert torch.allclose(fy[i, 0][box], expected, rtol=1e-4, atol=1e-3)


def test_tp_ram_ratios_grow_with_training_progress() -> None:
    g = torch.Generator().manual_seed(0)
    early, late = tp_ram_ratios(2000, 0.1, g), tp_ram_ratios(2000, 0.9, g)
    assert float(early.min()) >= 0 and float(early.max()) <= 0.1
    assert float(late.max()) <= 0.9 and float(late.mean()) == pytest.approx(0.45, abs=0.03)
    with pytest.raises(ValueError):
        tp_ram_ratios(2, 1.5)


def test_tp_ram_keeps_outside_box_and_does_nothing_at_start() -> None:
    shape = (11, 16, 13)
    x, ref = _raw(shape, seed=5), _raw(shape, seed=6, level=30.0)
    same, r0 = tp_ram(x, ref, progress=0.0)
    assert torch.all(r0 == 0) and torch.allclose(same, x, atol=1e-3)
    y, r = tp_ram(x, ref, progress=1.0, beta=0.05, generator=torch.Generator().manual_seed(1))
    box = low_freq_box(shape, 0.05, half=False)
    assert torch.allclose(_full(y).abs()[..., ~box], _full(x).abs()[..., ~box], rtol=1e-4, atol=1e-3)
    assert _phase_kept(x, y, torch.ones(shape, dtype=torch.bool))
    dc = _full(y)[:, 0, 0, 0, 0].real / _full(x)[:, 0, 0, 0, 0].real
    expected = 1 - r.double() + r.double() * _full(ref)[:, 0, 0, 0, 0].real / _full(x)[:, 0, 0, 0, 0].real
    assert torch.allclose(dc, expected, rtol=1e-4)


def test_reference_on_another_grid_brings_its_style() -> None:
    """Mixing with the same scene sampled on a coarser grid changes x very little; a darker
    reference on another grid darkens it."""
    rng = np.random.default_rng(7)
    fine = (100 + 20 * rng.random((8, 8, 8))).astype(np.float32).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    coarse = fine.reshape(8, 2, 8, 2, 8, 2).mean((1, 3, 5))
    x = torch.from_numpy(fine)[None, None]
    amp = amplitude_on_grid(coarse, (2.0, 2.0, 2.0), fine.shape, (1.0, 1.0, 1.0))
    y = mix_amplitude(x, amp, 0.05, 1.0)
    assert float((y - x).abs().mean()) < 0.02 * float(x.mean())
    dark = amplitude_on_grid(coarse * 0.5, (2.0, 2.0, 2.0), fine.shape, (1.0, 1.0, 1.0))
    assert float(mix_amplitude(x, dark, 0.05, 1.0).mean()) == pytest.approx(0.5 * float(x.mean()), rel=0.02)
