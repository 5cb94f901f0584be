"""MiDSS / UST-RUN: TP-RAM, reliability queue, SymGD merge, hardest-sample paste, the component."""

from __future__ import annotations

import io

import pytest
import torch
from component_batches import SHAPE, FixedTeacher, IntensityTeacher, blobs, context, tiny_vnet

from napari_freqseg.frequency.mixing import tp_ram
from napari_freqseg.training.config import ConfigError
from napari_freqseg.training.midss import MiDSS, MiDSSOptions, build_midss
from napari_freqseg.training.registry import TrainSetup
from napari_freqseg.training.reliability import ReliableQueue, hardness


def _raw_batch(n: int, seed: int):
    x, y = blobs(n, seed)
    stats = torch.tensor([[300.0, 50.0]] * n)  # raw = x * scale + shift
    raw = x * stats[:, 1].view(-1, 1, 1, 1, 1) + stats[:, 0].view(-1, 1, 1, 1, 1)
    return x, y, raw, stats


def test_tp_ram_ratio_stays_within_progress():
    g = torch.Generator().manual_seed(0)
    raw_l = torch.rand(64, 1, 8, 8, 8, generator=g) + 1
    raw_u = torch.rand(64, 1, 8, 8, 8, generator=g) * 5 + 3
    for progress in (0.0, 0.3, 1.0):
        _, ratios = tp_ram(raw_l, raw_u, progress, 0.1, g)
        assert float(ratios.min()) >= 0 and float(ratios.max()) <= progress
        if progress > 0:
            assert float(ratios.max()) > 0.8 * progress  # the whole range is used
    mixed, _ = tp_ram(raw_l, raw_u, 0.0, 0.1, g)
    assert torch.allclose(mixed, raw_l, atol=1e-4)


def test_tp_ram_moves_the_mean_intensity_by_its_ratio():
    g = torch.Generator().manual_seed(1)
    raw_l = torch.rand(4, 1, 16, 16, 16, generator=g) + 1
    raw_u = torch.rand(4, 1, 16, 16, 16, generator=g) * 3 + 5
    mixed, r = tp_ram(raw_l, raw_u, 1.0, 0.1, g)
    # positive volumes: the zero-frequency amplitude is the sum, so the mean moves by exactly r
    expected = (1 - r) * raw_l.mean(dim=(1, 2, 3, 4)) + r * raw_u.mean(dim=(1, 2, 3, 4))
    assert torch.allclose(mixed.mean(dim=(1, 2, 3, 4)), expected, rtol=1e-4)


def test_tp_ram_source_is_the_normalised_mixed_labeled_volume():
    midss = MiDSS(2, MiDSSOptions(reliability=False), seed=0)
    ctx = _ctx(tiny_vnet(), None, iteration=0)  # progress 0: no mixing, the source is x_l itself
    src, logs = midss._sources(ctx, 2)
    assert logs["midss_tp_ram_ratio"] == 0.0
    assert torch.allclose(src.x, src.x_weak, atol=1e-4)
    ctx = _ctx(tiny_vnet(), None, iteration=100)
    src, logs = midss._sources(ctx, 2)
    assert 0 < logs["midss_tp_ram_ratio"] <= 1
    assert not torch.allclose(src.x, src.x_weak, atol=1e-3)  # style moved toward the unlabeled volume
    for i in range(2):  # each source is one labeled volume, its ground truth and full weight
        j = next(j for j in range(2) if torch.equal(src.x_weak[i], ctx.x_l[j]))
        assert torch.equal(src.y[i], ctx.y_l[j]) and bool((src.mask[i] == 1).all())


def test_hardness_is_one_minus_foreground_dice():
    a = torch.zeros(3, 4, 4, 4, dtype=torch.int64)
    b = a.clone()
    a[0, :2] = b[0, :2] = 1  # identical
    a[1, :2] = 1
    b[1, 2:] = 1  # disjoint
    a[2, :2] = 1
    b[2, :1] = 1  # half overlap: Dice = 2·16 / (32 + 16)
    h = hardness(a, b, 2)
    assert torch.allclose(h, torch.tensor([0.0, 1.0, 1 - 32 / 48]))
    assert float(hardness(torch.zeros_like(a), torch.zeros_like(b), 2).min()) == 1.0  # empty agreement is not reliable


def _offer(q: ReliableQueue, values: list[float]) -> int:
    n = len(values)
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1, 1).expand(n, 1, 2, 2, 2).clone()
    labels = torch.zeros(n, 2, 2, 2, dtype=torch.int64)
    return q.offer(images, labels, torch.ones(n, 2, 2, 2), torch.tensor(values))


def test_reliable_queue_keeps_the_most_reliable_samples():
    q = ReliableQueue(capacity=3, max_threshold=0.1, growth=1.5)
    assert _offer(q, [0.05, 0.01, 0.08, 0.02, 0.5]) == 4  # 0.5 is above the threshold
    assert len(q) == 3
    assert torch.allclose(q.hardness, torch.tensor([0.01, 0.02, 0.05]))
    assert q.images[:, 0, 0, 0, 0].tolist() == [1.0, 3.0, 0.0]  # the samples travel with their hardness
    assert q.threshold == pytest.approx(0.05)  # drops to the hardest queued sample
    assert _offer(q, [0.06]) == 0  # now above the threshold
    assert q.threshold == pytest.approx(0.075)  # grows after a step without admission
    assert _offer(q, [0.03]) == 1
    assert torch.allclose(q.hardness, torch.tensor([0.01, 0.02, 0.03]))
    assert _offer(q, [0.2] * 5) == 0 and _offer(q, [0.2] * 5) == 0
    assert q.threshold == pytest.approx(0.03 * 1.5 * 1.5)
    assert _offer(q, [0.2]) == 0 and q.threshold == pytest.approx(0.1)  # capped at max_threshold


def test_reliable_queue_and_component_survive_state_dict_round_trip():
    a = MiDSS(2, MiDSSOptions(queue_size=4), seed=3)
    _offer(a.queue, [0.04, 0.02])
    a.hardest = (torch.ones(1, 1, 2, 2, 2), torch.ones(1, 2, 2, 2, dtype=torch.int64), torch.ones(1, 2, 2, 2))
    torch.rand(2, generator=a.generator)
    b = MiDSS(2, MiDSSOptions(queue_size=4), seed=7)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)  # as in a checkpoint, read back without executing code
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(b.queue) == 2 and torch.equal(b.queue.images, a.queue.images) and torch.equal(b.queue.hardness, a.queue.hardness)
    assert b.queue.threshold == a.queue.threshold
    assert torch.equal(b.hardest[0], a.hardest[0])
    assert torch.equal(torch.rand(3, generator=a.generator), torch.rand(3, generator=b.generator))
    _offer(b.queue, [0.01])  # the restored queue keeps working
    assert torch.allclose(b.queue.hardness, torch.tensor([0.01, 0.02, 0.04]))


def _fill(midss: MiDSS) -> None:
    """Queue two reliable unlabeled volumes (of another batch) with their labels."""
    x, y = blobs(2, 5)
    midss.queue.offer(x, y, torch.ones(2, *SHAPE), torch.zeros(2))


def _ctx(student, teacher, iteration=100, total=100):
    x_l, y_l, raw_l, stats_l = _raw_batch(2, 1)
    x_u, y_u, raw_u, stats_u = _raw_batch(2, 2)
    teacher = teacher if teacher is not None else FixedTeacher(y_u)
    return context(student, teacher, x_l, y_l, x_u, iteration, total, raw_l=raw_l, raw_u=raw_u, stats_l=stats_l, stats_u=stats_u)


def test_symgd_merges_the_unlabeled_parts_of_both_mixes():
    midss = MiDSS(2, seed=0)
    ctx = _ctx(tiny_vnet(), IntensityTeacher())
    pl = (ctx.x_u[:, 0] > 0).long()
    src, _ = midss._sources(ctx, 2)
    m = torch.zeros(2, *SHAPE, dtype=torch.bool)
    m[:, 4:12, 8:24, 8:24] = True
    probs_u, mixes = midss._teacher(ctx, src, m)
    assert torch.equal(probs_u, torch.softmax(IntensityTeacher()(ctx.x_u), dim=1))  # the clean batch, in the same pass
    assert torch.equal(ctx.teacher_probs("u"), probs_u)  # shared with the other components
    merged, mask = midss._symmetric_target(mixes, m, pl, torch.ones(2, *SHAPE))
    assert torch.equal(merged, pl)  # a voxel-wise teacher sees the unlabeled voxels in both mixes
    assert float(mask.mean()) > 0.9  # kept wherever both mixes are confident


def test_hardest_sample_gets_a_labeled_object_over_both_objects():
    midss = MiDSS(2, seed=0)
    ctx = _ctx(tiny_vnet(), None)
    label = torch.zeros(1, *SHAPE, dtype=torch.int64)
    label[0, 1:3, 1:3, 1:3] = 1
    midss.hardest = (torch.full((1, 1, *SHAPE), 7.0), label, torch.zeros(1, *SHAPE))
    image, target, mask = midss._hardest_mix(ctx)
    pasted = mask[0] == 1
    assert bool(pasted[1:3, 1:3, 1:3].all()) and bool(pasted[ctx.y_l[0] > 0].all() or pasted[ctx.y_l[1] > 0].all())
    assert torch.equal(image[0, 0][~pasted], torch.full_like(image[0, 0][~pasted], 7.0))
    assert bool((target[0][~pasted] == 0).all())


def test_midss_loss_is_finite_and_runs_every_part():
    student = tiny_vnet()
    midss = MiDSS(2, seed=0)
    ctx = _ctx(student, None)
    loss, logs = midss.loss(ctx)
    assert torch.isfinite(loss) and float(loss) > 0
    assert {"midss_ul", "midss_lu", "midss_sym", "midss_tp_ram_ratio", "midss_hardness"} <= logs.keys()
    assert midss.hardest is not None and "midss_hardest_pasted" not in logs
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None) > 0
    _fill(midss)
    _, logs = midss.loss(_ctx(student, None))  # second step: queued sources and the hardest paste
    assert logs["midss_queued_sources"] == 1.0 and logs["midss_hardest_pasted"] == 1.0


def test_warmup_turns_the_component_off():
    midss = MiDSS(2, MiDSSOptions(warmup=0.5), seed=0)
    loss, logs = midss.loss(_ctx(tiny_vnet(), None, iteration=10, total=100))
    assert float(loss) == 0.0 and logs == {"midss_w": 0.0} and midss.hardest is None


def test_tp_ram_without_raw_intensities_is_a_clear_error():
    x_l, y_l = blobs(2, 1)
    x_u, y_u = blobs(2, 2)
    with pytest.raises(RuntimeError, match="raw intensities"):
        MiDSS(2).loss(context(tiny_vnet(), FixedTeacher(y_u), x_l, y_l, x_u))


def test_a_few_steps_lower_the_midss_loss():
    student = tiny_vnet(seed=2)
    midss = MiDSS(2, seed=0)
    midss.loss(_ctx(student, None))  # sets the hardest sample
    _fill(midss)
    start = midss.state_dict()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        midss.load_state_dict(start)  # same sources, boxes and augmentations every step
        loss, _ = midss.loss(_ctx(student, None))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0], losses


def test_factory_validates_options():
    student = tiny_vnet()
    setup = TrainSetup(
        n_classes=2,
        student=student,
        feature_channels=2,
        total_iterations=10,
        patch_size=SHAPE,
        device=torch.device("cpu"),
        make_teacher=tiny_vnet,
    )
    comp = build_midss({"symgd": False, "queue_size": 5}, setup)
    assert comp.options.symgd is False and comp.queue.capacity == 5 and setup.teacher is not None
    with pytest.raises(ConfigError, match="symgd must be true or false"):
        build_midss({"symgd": 1}, setup)
    with pytest.raises(ConfigError, match="box_min must not exceed box_max"):
        build_midss({"box_min": 0.5, "box_max": 0.1}, setup)
