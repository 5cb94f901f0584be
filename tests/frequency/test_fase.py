"""F-ASE: band reliance from the amplitude gradient, weights in [0, 2], reweighting."""

from __future__ import annotations

import pytest
import torch
from freq_toy import FilterNet

from napari_freqseg.frequency import (
    FASE,
    amplitude_gradient,
    amplitude_phase,
    band_reliance,
    input_gradient,
    recompose,
    shell_index,
)

N_BANDS = 6


def _reliance(kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 16, 16, 16, generator=g)
    y = (torch.rand(2, 16, 16, 16, generator=g) > 0.5).long()
    grad = input_gradient(FilterNet(kind), x, y)
    return band_reliance(x, grad, N_BANDS), x, grad


def test_amplitude_gradient_is_the_chain_rule_through_recomposition() -> None:
    x = torch.randn(1, 1, 9, 8, 7)
    weight = torch.randn(1, 1, 9, 8, 7)
    ag = amplitude_gradient(x, 2 * x * weight)  # L = sum(w x^2)
    amp, phase = amplitude_phase(x)
    assert torch.equal(ag.amplitude, amp) and ag.shape == (9, 8, 7)
    a = amp.clone().requires_grad_(True)
    ((recompose(a, phase, (9, 8, 7)) ** 2) * weight).sum().backward()
    assert torch.allclose(ag.grad, a.grad, atol=1e-5)


def test_reliance_follows_what_the_model_looks_at() -> None:
    low, _, _ = _reliance("blur")
    high, _, _ = _reliance("laplacian")
    assert low.shape == (2, N_BANDS)
    assert torch.all(low.argmax(1) <= 1)  # a blur relies on the lowest bands
    assert torch.all(high.argmax(1) >= N_BANDS // 2)  # a Laplacian on the highest


@pytest.mark.parametrize("kind", ["blur", "laplacian"])
def test_weights_are_in_0_2_and_lowest_where_reliance_is_highest(kind: str) -> None:
    fase = FASE(n_bands=N_BANDS, strength=2.0)
    assert torch.equal(fase.weights(), torch.ones(N_BANDS))  # nothing learnt yet: no change
    rel, x, grad = _reliance(kind)
    batch = fase.update_from_grad(x, grad)
    w = fase.weights()
    assert torch.all((w >= 0) & (w <= 2))
    assert int(w.argmin()) == int(fase.reliance.argmax())
    assert int(w.argmax()) == int(fase.reliance.argmin())
    order = torch.argsort(fase.reliance)
    assert torch.all(w[order][1:] <= w[order][:-1])  # monotone: more reliance, lower weight
    assert torch.allclose(batch.mean(-1), torch.ones(2))
    assert torch.equal(FASE(N_BANDS, strength=0.0).weights(fase.reliance), torch.ones(N_BANDS))


def test_running_reliance_is_an_exponential_average() -> None:
    fase = FASE(n_bands=N_BANDS, momentum=0.5)
    _, x, g_low = _reliance("blur")
    _, x2, g_high = _reliance("laplacian", seed=1)
    first = fase.update_from_grad(x, g_low).mean(0)
    second = fase.update_from_grad(x2, g_high).mean(0)
    assert torch.allclose(fase.reliance, 0.5 * first + 0.5 * second, atol=1e-6)


def test_apply_scales_each_shell_by_its_weight_and_keeps_phase() -> None:
    fase = FASE(n_bands=N_BANDS, strength=1.0)
    _, x, grad = _reliance("laplacian")
    fase.update_from_grad(x, grad)
    y = fase.apply(x)
    fx, fy = torch.fft.fftn(x, dim=(-3, -2, -1)), torch.fft.fftn(y, dim=(-3, -2, -1))
    idx = shell_index((16, 16, 16), N_BANDS, half=False)
    assert torch.allclose(fy[:, 0], fx[:, 0] * fase.weights()[idx], atol=1e-3)


def test_stochastic_variant_drops_over_relied_components_only() -> None:
    fase = FASE(n_bands=N_BANDS, drop_rate=0.9)
    _, x, grad = _reliance("laplacian")
    fase.update_from_grad(x, grad)
    y = fase.apply(x, stochastic=True, generator=torch.Generator().manual_seed(0))
    fx, fy = torch.fft.fftn(x, dim=(-3, -2, -1)), torch.fft.fftn(y, dim=(-3, -2, -1))
    ratio = (fy.abs() / fx.abs())[:, 0]
    idx = shell_index((16, 16, 16), N_BANDS, half=False)
    over = fase.reliance > 1
    for band in range(N_BANDS):
        r = ratio[:, idx == band]
        if over[band]:
            assert torch.all((r < 1e-4) | ((r - 1).abs() < 1e-4)), band  # dropped or kept whole
        else:
            assert torch.allclose(r, torch.full_like(r, float(fase.weights()[band])), atol=1e-3)
    top = int(fase.reliance.argmax())
    assert 0.5 < float((ratio[:, idx == top] < 1e-4).float().mean()) <= 0.95  # ~drop_rate of the top band
    kept = ratio > 1e-3
    phase = torch.angle(fy * fx.conj())[:, 0]
    assert float(phase[kept].abs().max()) < 1e-3


def test_gain_is_the_apply_multiplier_and_stays_in_0_2() -> None:
    fase = FASE(n_bands=N_BANDS)
    _, x, grad = _reliance("blur")
    fase.update_from_grad(x, grad)
    g = fase.gain((16, 16, 16))
    assert g.shape == (1, 1, 16, 16, 9)
    spectrum = torch.fft.rfftn(x, dim=(-3, -2, -1), norm="ortho")
    expected = torch.fft.irfftn(spectrum * g, s=(16, 16, 16), dim=(-3, -2, -1), norm="ortho")
    assert torch.allclose(fase.apply(x), expected, atol=1e-5)
    random = fase.gain((16, 16, 16), 3, stochastic=True, generator=torch.Generator().manual_seed(0))
    assert random.shape == (3, 1, 16, 16, 9) and float(random.min()) >= 0 and float(random.max()) <= 2
