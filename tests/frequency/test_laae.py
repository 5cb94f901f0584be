"""L-AAE: style statistics, restyling, the bidirectional attack on a trained toy model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from freq_toy import ToyNet, blob_batch

from napari_freqseg.errors import CancelledError
from napari_freqseg.frequency import (
    FASE,
    LowFreqStyle,
    StyleBank,
    amplitude_gradient,
    amplitude_phase,
    bidirectional,
    confident_pseudo_labels,
    eval_mode,
    input_gradient,
    laae_attack,
    low_freq_box,
    lowfreq_style,
    restyle,
)

UP_DOWN = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])


def _per_sample_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        ce = F.cross_entropy(model(x), y, reduction="none").flatten(1)
    if mask is None:
        return ce.mean(1)
    m = mask.flatten(1)
    return (ce * m).sum(1) / m.sum(1)


@pytest.mark.parametrize("shape", [(9, 12, 10), (8, 7), (16, 16, 5)])
def test_style_is_the_full_box_mean_and_std(shape: tuple[int, ...]) -> None:
    x = torch.rand(3, 2, *shape) * 10
    amp, _ = amplitude_phase(x)
    style = lowfreq_style(amp, low_freq_box(shape, 0.2), shape)
    nd = len(shape)
    full = torch.fft.fftn(x.double(), dim=tuple(range(-nd, 0)), norm="ortho").abs()
    values = full[..., low_freq_box(shape, 0.2, half=False)]
    assert torch.allclose(style.mean.double(), values.mean(-1), rtol=1e-5)
    assert torch.allclose(style.std.double(), values.std(-1, unbiased=False), rtol=1e-4)


def test_restyle_sets_the_new_statistics_inside_the_box_only() -> None:
    shape = (12, 11, 10)
    amp, _ = amplitude_phase(torch.rand(2, 1, *shape) * 5 + 1)
    box = low_freq_box(shape, 0.2)
    style = lowfreq_style(amp, box, shape)
    new = LowFreqStyle(mean=style.mean * 1.3, std=style.std * 0.8)
    moved = restyle(amp, box, style, new)
    got = lowfreq_style(moved, box, shape)
    assert torch.allclose(got.mean, new.mean, rtol=1e-4) and torch.allclose(got.std, new.std, rtol=1e-4)
    assert torch.equal(moved[..., ~box], amp[..., ~box])
    assert float(restyle(amp, box, style, LowFreqStyle(style.mean * -5, style.std)).min()) >= 0  # never negative


def test_bidirectional_splits_the_batch() -> None:
    signs = bidirectional(7, torch.Generator().manual_seed(0))
    assert int((signs > 0).sum()) == 4 and int((signs < 0).sum()) == 3
    assert torch.equal(bidirectional(1), torch.ones(1))


def test_up_half_raises_and_down_half_lowers_the_loss(toy_model: ToyNet) -> None:
    x, y = blob_batch(6, (12, 12, 12), seed=99)
    before = _per_sample_loss(toy_model, x, y)
    for steps, step in ((1, 0.5), (2, 0.25)):
        result = laae_attack(toy_model, x, y, beta=0.1, steps=steps, step_size=step, directions=UP_DOWN)
        after = _per_sample_loss(toy_model, result.x, y)
        assert torch.all(after[:3] > before[:3]), (before, after)
        assert torch.all(after[3:] < before[3:]), (before, after)
        assert torch.equal(result.directions, UP_DOWN)
        assert float(result.shift.mean.abs().max()) == pytest.approx(steps * step)


def test_teacher_pseudo_labels_with_a_confidence_mask(toy_model: ToyNet) -> None:
    x, _ = blob_batch(6, (12, 12, 12), seed=98)
    with eval_mode(toy_model), torch.no_grad():  # the teacher sees its own view of the batch
        labels, mask = confident_pseudo_labels(torch.softmax(toy_model(0.6 * x), 1), threshold=0.9)
    assert 0 < float(mask.mean()) < 1
    before = _per_sample_loss(toy_model, x, labels, mask)
    result = laae_attack(toy_model, x, labels, mask=mask, beta=0.1, step_size=0.2, directions=UP_DOWN)
    after = _per_sample_loss(toy_model, result.x, labels, mask)
    assert torch.all(after[:3] > before[:3]) and torch.all(after[3:] < before[3:])
    nothing = laae_attack(toy_model, x, labels, mask=torch.zeros_like(mask), directions=UP_DOWN)
    assert torch.allclose(nothing.x, x, atol=1e-5)  # no confident voxel: no gradient, no change


def test_attack_works_on_a_2d_model(toy_model_2d: ToyNet) -> None:
    x3, y3 = blob_batch(4, (4, 24, 24), seed=50)
    x, y = x3[:, :, 2], y3[:, 2]
    before = _per_sample_loss(toy_model_2d, x, y)
    result = laae_attack(toy_model_2d, x, y, beta=0.1, step_size=0.5, directions=torch.tensor([1.0, 1, -1, -1]))
    after = _per_sample_loss(toy_model_2d, result.x, y)
    assert torch.all(after[:2] > before[:2]) and torch.all(after[2:] < before[2:])


def test_attack_leaves_the_model_untouched(toy_model: ToyNet) -> None:
    model = copy.deepcopy(toy_model).train()
    model.body[3].eval()  # a mixed train/eval state must come back as it was
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = blob_batch(4, (12, 12, 12), seed=3)
    laae_attack(model, x, y, steps=3, init_std=1.0, generator=torch.Generator().manual_seed(0))
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # weights and BatchNorm running statistics


def test_amplitude_outside_the_box_and_phase_are_kept(toy_model: ToyNet) -> None:
    x, y = blob_batch(2, (12, 12, 12), seed=4)
    result = laae_attack(toy_model, x, y, beta=0.1, step_size=2.0)
    full_x = torch.fft.fftn(x.double(), dim=(-3, -2, -1))
    full_y = torch.fft.fftn(result.x.double(), dim=(-3, -2, -1))
    box = low_freq_box((12, 12, 12), 0.1, half=False)
    assert torch.allclose(full_y.abs()[..., ~box], full_x.abs()[..., ~box], atol=1e-3)
    strong = (full_x.abs() > 1e-2) & (full_y.abs() > 1e-2)
    assert float(torch.angle(full_y * full_x.conj())[strong].abs().max()) < 1e-3
    assert not torch.allclose(result.x, x, atol=1e-3)


def test_clean_gradient_replaces_the_first_pass(toy_model: ToyNet) -> None:
    x, y = blob_batch(4, (12, 12, 12), seed=5)
    grad = input_gradient(toy_model, x, y)
    calls = {"n": 0}

    class Counting(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            return toy_model(t)

    shared = laae_attack(Counting(), x, y, clean_grad=grad, directions=UP_DOWN[1:5])
    assert calls["n"] == 0
    own = laae_attack(toy_model, x, y, directions=UP_DOWN[1:5])
    assert torch.allclose(shared.x, own.x, atol=1e-6)


def test_shared_amplitude_gradient_and_fase_gain_fuse_into_one_transform(toy_model: ToyNet) -> None:
    x, y = blob_batch(4, (12, 12, 12), seed=9)
    grad = input_gradient(toy_model, x, y)
    fase = FASE(n_bands=4)
    ag = amplitude_gradient(x, grad)
    fase.update(ag)
    fused = laae_attack(toy_model, x, y, clean_grad=ag, gain=fase.gain((12, 12, 12)), directions=UP_DOWN[1:5])
    separate = fase.apply(laae_attack(toy_model, x, y, clean_grad=grad, directions=UP_DOWN[1:5]).x)
    assert torch.allclose(fused.x, separate, atol=1e-5)


def test_tiled_gradient_agrees_with_the_whole_volume_gradient() -> None:
    torch.manual_seed(0)
    pointwise = torch.nn.Conv3d(1, 2, 1)  # no cross-tile context: tiles change only the loss scale
    x, y = blob_batch(1, (16, 16, 16), seed=6)
    whole = input_gradient(pointwise, x, y)
    tiled = input_gradient(pointwise, x, y, tile=8)
    assert torch.allclose(tiled, whole * 8, rtol=1e-4, atol=1e-9)


def test_style_bank_spread_centre_and_alignment() -> None:
    bank = StyleBank(momentum=0.5)
    bank.update(LowFreqStyle(mean=torch.tensor([[1.0], [3.0]]), std=torch.tensor([[1.0], [1.0]])), torch.tensor([0, 0]))
    bank.update(LowFreqStyle(mean=torch.tensor([[10.0]]), std=torch.tensor([[2.0]])), torch.tensor([1]))
    assert bank.sites == [0, 1]
    centre = bank.centre()
    assert float(centre.mean) == pytest.approx((2.0 + 10.0) / 2) and float(centre.std) == pytest.approx(1.5)
    assert float(bank.spread().mean) > 3.0

    x = blob_batch(2, (12, 12, 12), seed=7)[0]
    target = LowFreqStyle(mean=torch.tensor([[5.0]]), std=torch.tensor([[2.0]]))
    model = torch.nn.Conv3d(1, 2, 1)
    result = laae_attack(
        model, x, torch.zeros(2, 12, 12, 12, dtype=torch.long), beta=0.2, step_size=0.0, centre=target, align=1.0
    )
    assert torch.allclose(result.new_style.mean, torch.full((2, 1), 5.0), rtol=1e-3)
    assert torch.allclose(result.new_style.std, torch.full((2, 1), 2.0), rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_style_bank_restored_on_the_cpu_follows_the_training_device() -> None:
    """A checkpoint loads on the CPU; a resumed CUDA run updates the bank with CUDA statistics."""
    bank = StyleBank(momentum=0.5)
    bank.update(LowFreqStyle(mean=torch.tensor([[1.0]]), std=torch.tensor([[1.0]])), torch.tensor([0]))
    bank.update(LowFreqStyle(mean=torch.tensor([[2.0]]), std=torch.tensor([[1.0]])), torch.tensor([1]))
    restored = StyleBank(momentum=0.5)
    restored.load_state_dict(bank.state_dict())
    on = torch.device("cuda")
    restored.update(LowFreqStyle(mean=torch.ones(1, 1, device=on), std=torch.ones(1, 1, device=on)), torch.tensor([0]))
    assert restored.centre().mean.device.type == "cuda" and restored.spread().std.device.type == "cuda"


def test_attack_can_be_cancelled(toy_model: ToyNet) -> None:
    x, y = blob_batch(2, (12, 12, 12), seed=8)
    with pytest.raises(CancelledError):
        laae_attack(toy_model, x, y, steps=3, cancelled=lambda: True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_attack_and_reweighting_on_cuda(toy_model: ToyNet) -> None:
    model = copy.deepcopy(toy_model).cuda()
    x, y = blob_batch(4, (12, 12, 12), seed=10)
    x, y = x.cuda(), y.cuda()
    grad = input_gradient(model, x, y)
    ag = amplitude_gradient(x, grad)
    fase = FASE(n_bands=4)
    fase.update(ag)
    result = laae_attack(model, x, y, clean_grad=ag, gain=fase.gain((12, 12, 12), device="cuda"))
    assert result.x.is_cuda and result.x.shape == x.shape
    assert fase.apply(x, stochastic=True).is_cuda
