"""BFA component: finite loss, gradients to the boundary head and the student, loss decreases."""

from __future__ import annotations

import pytest
import torch
from component_batches import FixedTeacher, blobs, context, tiny_vnet

from napari_freqseg.training.bfa import BFA, BFAOptions, alignment_loss, build_bfa
from napari_freqseg.training.config import ConfigError
from napari_freqseg.training.registry import TrainSetup


def _batch():
    x_l, y_l = blobs(2, seed=1)
    x_u, y_u = blobs(2, seed=2)
    return x_l, y_l, x_u, y_u


def test_bfa_loss_is_finite_and_reaches_head_and_student():
    x_l, y_l, x_u, y_u = _batch()
    student = tiny_vnet()
    bfa = BFA(student.feature_channels, 2, BFAOptions(align_weight=1.0), seed=0)
    loss, logs = bfa.loss(context(student, FixedTeacher(y_u), x_l, y_l, x_u))
    assert torch.isfinite(loss)
    assert {"bfa_seg", "bfa_boundary", "bfa_align"} <= logs.keys()
    assert logs["bfa_gt_boundary_voxels"] > 0 and logs["bfa_pl_boundary_voxels"] > 0
    loss.backward()
    head_grad = sum(float(p.grad.abs().sum()) for p in bfa.parameters())
    student_grad = sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None)
    assert head_grad > 0 and student_grad > 0
    assert {id(p) for p in bfa.modules_to_train()[0].parameters()} == {id(p) for p in bfa.parameters()}


def test_warmup_trains_only_the_ground_truth_parts():
    x_l, y_l, x_u, y_u = _batch()
    student = tiny_vnet()
    bfa = BFA(student.feature_channels, 2, BFAOptions(warmup=0.2), seed=0)
    loss, logs = bfa.loss(context(student, FixedTeacher(y_u), x_l, y_l, x_u, iteration=10, total=100))
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert logs["bfa_ramp"] == 0.0 and "bfa_align" not in logs


def test_alignment_pulls_pseudo_label_features_only():
    features = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    gt = torch.zeros(1, 2, 4, 4, 4, dtype=torch.bool)
    pl = torch.zeros_like(gt)
    gt[0, 1, 0] = True
    pl[0, 1, 3] = True
    loss = alignment_loss(features, gt, pl)
    loss.backward()
    assert float(features.grad[0, :, 3].abs().sum()) > 0  # PL-boundary voxels move
    assert float(features.grad[0, :, 0].abs().sum()) == 0  # GT side is the detached anchor
    assert alignment_loss(features, gt, torch.zeros_like(pl)) is None
    aligned = torch.ones(1, 3, 4, 4, 4)
    assert float(alignment_loss(aligned, gt, pl)) == pytest.approx(0.0, abs=1e-6)


def test_a_few_steps_lower_the_bfa_loss():
    x_l, y_l, x_u, y_u = _batch()
    student = tiny_vnet(seed=1)
    teacher = FixedTeacher(y_u)
    bfa = BFA(student.feature_channels, 2, BFAOptions(align_weight=1.0), seed=0)
    start = bfa.generator.get_state()
    opt = torch.optim.Adam(list(student.parameters()) + bfa.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        bfa.generator.set_state(start)  # same cuboids every step: the loss itself must fall
        loss, _ = bfa.loss(context(student, teacher, x_l, y_l, x_u))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_state_dict_round_trip_restores_head_and_sampling():
    student = tiny_vnet()
    a = BFA(student.feature_channels, 2, seed=5)
    torch.rand(3, generator=a.generator)
    b = BFA(student.feature_channels, 2, seed=9)
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(torch.rand(4, generator=a.generator), torch.rand(4, generator=b.generator))


def test_factory_validates_its_table_and_requests_the_teacher():
    student = tiny_vnet()
    made = []

    def make_teacher():
        made.append(1)
        return tiny_vnet()

    setup = TrainSetup(
        n_classes=2,
        student=student,
        feature_channels=student.feature_channels,
        total_iterations=10,
        patch_size=(16, 32, 32),
        device=torch.device("cpu"),
        make_teacher=make_teacher,
    )
    comp = build_bfa({"align_weight": 0.5, "candidates": 2}, setup)
    assert comp.options.align_weight == 0.5 and comp.options.candidates == 2 and made == [1]
    with pytest.raises(ConfigError, match="did you mean 'align_weight'"):
        build_bfa({"allign_weight": 0.5}, setup)
    with pytest.raises(ConfigError, match="unlabeled_weight = 2.0 is out of range"):
        build_bfa({"unlabeled_weight": 2.0}, setup)
