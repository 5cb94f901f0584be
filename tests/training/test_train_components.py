"""Loss components: supervised, mean teacher (schedule, confidence mask), frequency shortcuts."""

from __future__ import annotations

import copy

import pytest
import torch
from component_batches import context as shared_context

from napari_freqseg.models.vnet import VNet
from napari_freqseg.training.components import StepContext
from napari_freqseg.training.registry import TrainSetup, build_components
from napari_freqseg.training.trainer import ema_update


class Recorder(torch.nn.Module):
    """Wraps a network and keeps every input it is called with."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.inputs: list[torch.Tensor] = []
        self.size_divisor = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.net(x)


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, 16, 32, 32, dtype=torch.long)
    y[:, 4:12, 8:24, 10:22] = 1
    x = (y.float() * 2 - 1)[:, None] + 0.3 * torch.randn(n, 1, 16, 32, 32, generator=g)
    return x, y


def context(student: torch.nn.Module, teacher: torch.nn.Module | None, iteration: int, total: int = 10) -> StepContext:
    x_l, y_l = blobs(2, 0)
    x_u, _ = blobs(2, 1)
    return shared_context(student, teacher, x_l, y_l, x_u, iteration, total,
                          site_l=torch.zeros(2, dtype=torch.long), site_u=torch.ones(2, dtype=torch.long))  # fmt: skip


def setup(student: torch.nn.Module) -> TrainSetup:
    return TrainSetup(
        n_classes=2,
        student=student,
        feature_channels=2,
        total_iterations=10,
        patch_size=(16, 32, 32),
        device=torch.device("cpu"),
        sites=["a", "b"],
        make_teacher=lambda: copy.deepcopy(student).eval(),
    )


def test_supervised_loss_is_low_for_the_truth() -> None:
    (sup,) = build_components({"supervised": {}}, setup(VNet(n_filters=2)))

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = (x > 0).float()
            return torch.cat([1 - m, m], 1) * 20 - 10

    good, _ = sup.loss(context(Oracle(), None, 0))
    bad, logged = sup.loss(context(VNet(n_filters=2), None, 0))
    assert float(good) < 0.05 < float(bad) and set(logged) == {"sup_ce", "sup_dice"}


def test_mean_teacher_schedule_and_mask() -> None:
    student = VNet(n_filters=2, dropout=0.0)
    s = setup(student)
    _, mt = build_components({"supervised": {}, "mean_teacher": {"warmup": 0.2, "rampup": 0.5, "threshold": 0.0}}, s)
    assert mt.current_weight(context(student, s.teacher, 1)) == 0.0  # supervised warm-up
    ramp = [mt.current_weight(context(student, s.teacher, i)) for i in (2, 4, 7, 9)]
    assert 0 < ramp[0] < ramp[1] < ramp[2] == ramp[3] == 1.0
    loss, logged = mt.loss(context(student, s.teacher, 9))
    assert float(loss) > 0 and logged["mt_mask"] == 1.0
    s2 = setup(student)
    _, strict = build_components({"supervised": {}, "mean_teacher": {"warmup": 0.0, "threshold": 1.0}}, s2)
    loss, logged = strict.loss(context(student, s2.teacher, 9))
    assert float(loss) == 0.0 and logged["mt_mask"] == 0.0  # no voxel is that confident


def test_ema_teacher_follows_the_student() -> None:
    student, teacher = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(0.0)
    ema_update(teacher, student, 0.99, iteration=0)  # α = min(1 - 1/1, 0.99) = 0: a copy
    assert float(teacher.weight) == 1.0
    with torch.no_grad():
        student.weight.fill_(2.0)
    ema_update(teacher, student, 0.99, iteration=1000)
    assert float(teacher.weight) == pytest.approx(0.99 * 1.0 + 0.01 * 2.0)


def test_frequency_component_trains_on_adversarial_volumes_and_teacher_sees_clean() -> None:
    torch.manual_seed(0)
    student = Recorder(VNet(n_filters=2, dropout=0.0))
    s = setup(student)
    s.make_teacher = lambda: Recorder(copy.deepcopy(student.net).eval())
    (freq,) = build_components({"frequency": {"warmup": 0.0, "rampup": 0.0, "threshold": 0.0, "fraction": 1.0}}, s)
    ctx = context(student, s.teacher, 5)
    loss, logged = freq.loss(ctx)  # no first pass here: the component takes the input gradient itself
    assert torch.isfinite(loss) and {"freq_l", "freq_u", "freq_u_mask"} <= set(logged)
    # The teacher saw exactly the clean unlabeled batch, once.
    assert len(s.teacher.inputs) == 1 and torch.equal(s.teacher.inputs[0], ctx.x_u)
    # The student saw the clean labeled + unlabeled batch (input gradient) and then changed volumes.
    clean = torch.cat([ctx.x_l, ctx.x_u])
    assert torch.equal(student.inputs[0], clean)
    adversarial = student.inputs[-1]
    assert adversarial.shape == clean.shape and not torch.allclose(adversarial, clean, atol=1e-2)
    # Same anatomy (phase): the change is mostly a low-frequency restyling, correlation stays high.
    a, b = adversarial.flatten(1), clean.flatten(1)
    corr = ((a - a.mean(1, keepdim=True)) * (b - b.mean(1, keepdim=True))).mean(1) / (a.std(1) * b.std(1))
    assert (corr > 0.8).all()
    # The attack wrote no parameter gradients: only the returned loss's backward will.
    assert all(p.grad is None for p in student.parameters())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    # F-ASE learnt band reliance and L-AAE the site styles; both survive a state round trip.
    state = freq.state_dict()
    assert state["reliance"].shape == (8,) and sorted(state["styles"]["first"]) == [0, 1]
    (other,) = build_components({"frequency": {}}, setup(VNet(n_filters=2)))
    other.load_state_dict(state)
    assert torch.equal(other.fase.weights(), freq.fase.weights())


def test_frequency_component_switches() -> None:
    from napari_freqseg.training.config import ConfigError

    (only_fase,) = build_components({"frequency": {"laae": False}}, setup(VNet(n_filters=2)))
    assert only_fase.laae is None and only_fase.fase is not None
    with pytest.raises(ConfigError, match="enable laae, fase or both"):
        build_components({"frequency": {"laae": False, "fase": False}}, setup(VNet(n_filters=2)))
    s = setup(VNet(n_filters=2))
    build_components({"frequency": {"unlabeled_weight": 0.0}}, s)
    assert s.teacher is None  # labeled-only frequency augmentation needs no teacher


def test_frequency_component_uses_the_first_pass_gradient_and_a_random_half() -> None:
    """With the first backward pass's input gradient in the context, the component runs the student
    once, on a random half of the labeled and of the unlabeled adversarial volumes."""
    torch.manual_seed(0)
    student = Recorder(VNet(n_filters=2, dropout=0.0))
    s = setup(student)
    s.make_teacher = lambda: Recorder(copy.deepcopy(student.net).eval())
    (freq,) = build_components({"frequency": {"warmup": 0.0, "rampup": 0.0, "threshold": 0.0}}, s)
    ctx = context(student, s.teacher, 5)
    g = torch.Generator().manual_seed(3)
    ctx.input_grad = {"l": torch.randn(ctx.x_l.shape, generator=g), "u": torch.randn(ctx.x_u.shape, generator=g)}
    loss, _ = freq.loss(ctx)
    assert len(student.inputs) == 1 and student.inputs[0].shape[0] == 2  # one labeled + one unlabeled
    adversarial = student.inputs[0]
    assert not torch.allclose(adversarial[0], ctx.x_l[0], atol=1e-2) and not torch.allclose(adversarial[0], ctx.x_l[1], atol=1e-2)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_shared_transform_gives_the_same_volumes_as_attack_then_fase() -> None:
    """L-AAE and F-ASE from one amplitude gradient and one inverse FFT equal L-AAE followed by a
    separate F-ASE pass (the earlier form), for the same input gradient."""
    from napari_freqseg.frequency import FASE, bidirectional, laae_attack, masked_cross_entropy

    x, y = blobs(4, 2)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    net = VNet(n_filters=2, dropout=0.0)
    dirs = bidirectional(4, torch.Generator().manual_seed(0))
    old_fase, new_fase = FASE(strength=0.5), FASE(strength=0.5)
    old_fase.update_from_grad(x, grad)
    old = old_fase.apply(
        laae_attack(net, x, y, masked_cross_entropy, beta=0.1, step_size=3.0, clean_grad=grad, directions=dirs).x
    )
    from napari_freqseg.frequency.amplitude_grad import amplitude_gradient

    ag = amplitude_gradient(x, grad)
    new_fase.update(ag)
    gain = new_fase.gain(ag.shape, 4)
    new = laae_attack(net, x, y, masked_cross_entropy, beta=0.1, step_size=3.0, clean_grad=ag, directions=dirs, gain=gain).x
    assert torch.allclose(old, new, atol=1e-4 * float(x.abs().max()))
