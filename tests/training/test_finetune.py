"""Fine-tuning on corrected slices: the sparse-slice loss, the mapping to the model grid, the gain
on the corrected slices, frozen batch norm, budgets, replay, metadata and Cancel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_blob_volume, tiny_vnet_meta

import napari_freqseg
from napari_freqseg.correction import CorrectionRecord
from napari_freqseg.errors import CancelledError, CorrectionError
from napari_freqseg.inference import predict_volume
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.resample import model_grid
from napari_freqseg.io.volume import Volume
from napari_freqseg.metrics import dice
from napari_freqseg.models.modelfile import build_network, load_model, read_meta, save_model
from napari_freqseg.training.finetune import FinetuneOptions, default_patch, finetune, finetune_file, format_step, parse_step
from napari_freqseg.training.sparse import sparse_slice_loss, sparse_target

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
SHAPE = (32, 32, 32)


def _grid(shape=SHAPE, spacing=(1.0, 1.0, 1.0), direction=IDENTITY) -> Geometry:
    return Geometry(size=shape[::-1], spacing=spacing, origin=(0.0, 0.0, 0.0), direction=direction)


@pytest.fixture
def blob_scan() -> tuple[Volume, np.ndarray]:
    image, label = make_blob_volume(SHAPE, seed=3)
    return Volume(array=image, geometry=_grid()), label


def _tiny(norm: str = "instance", seed: int = 0, **meta_overrides):
    torch.manual_seed(seed)
    meta = tiny_vnet_meta(arch_args={"n_filters": 4, "normalization": norm}, patch_size=[32, 32, 32], **meta_overrides)
    return build_network(meta).eval(), meta


def test_sparse_slice_loss_has_no_gradient_off_the_corrected_slices() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 8, 12, 12, requires_grad=True)
    target = torch.randint(0, 2, (1, 8, 12, 12))
    weight = torch.zeros(1, 8, 12, 12)
    weight[:, 3] = 1.0
    weight[:, 5, :, :6] = 0.5
    ce, dice_loss = sparse_slice_loss(logits, target, weight)
    (ce + dice_loss).backward()
    off = (weight == 0)[:, None].expand_as(logits)
    assert torch.all(logits.grad[off] == 0)
    assert torch.all(logits.grad[:, :, 3].abs().sum(dim=1) > 0)
    # Whatever the network says, or the labels hold, off the slices: the supervised term is the same.
    changed_logits = logits.detach().clone()
    changed_logits[off] = torch.randn(int(off.sum()))
    changed_target = torch.where(weight > 0, target, 1 - target)
    again = sum(sparse_slice_loss(changed_logits, changed_target, weight))
    assert torch.allclose(again, (ce + dice_loss).detach())


def test_sparse_target_on_the_same_grid_is_the_corrected_slices_exactly() -> None:
    labels = make_blob_volume(SHAPE)[1]
    record = CorrectionRecord(SHAPE)
    record.mark("z", 10)
    record.mark("x", 20)
    mask = record.labeled_mask()
    g = _grid()
    t = sparse_target(np.zeros(SHAPE, np.float32), g, g, labels, mask, 2)
    np.testing.assert_array_equal(t.weight > 0, mask)
    np.testing.assert_array_equal(t.target[mask], labels[mask])
    assert t.weight.max() == 1.0 and t.supervised == int(mask.sum())


def test_sparse_target_follows_reorientation_and_a_coarser_spacing() -> None:
    """A flipped (RAS) scan on an LPS model grid: the corrected z slice lands on the same physical
    plane; at 2 mm along z each 1 mm slice supervises the model slice it is nearest to."""
    labels = make_blob_volume(SHAPE)[1]
    flipped = _grid(direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    mask = np.zeros(SHAPE, bool)
    mask[:, :, 7] = True  # an x slice: x is flipped on the LPS grid
    grid = model_grid(flipped, None, "LPS")
    t = sparse_target(np.zeros(SHAPE, np.float32), grid, flipped, labels, mask, 2)
    assert np.array_equal(np.unique(np.nonzero(t.weight)[2]), [SHAPE[2] - 1 - 7])
    np.testing.assert_array_equal(t.target[:, :, SHAPE[2] - 1 - 7], labels[:, ::-1, 7])

    source = _grid()
    coarse = model_grid(source, (1.0, 1.0, 2.0), None)  # 16 slices of 2 mm, centres at source z 0.5, 2.5, ...
    mask = np.zeros(SHAPE, bool)
    mask[12] = True
    t = sparse_target(np.zeros(coarse.shape_zyx, np.float32), coarse, source, labels, mask, 2)
    z = np.unique(np.nonzero(t.weight)[0])
    assert list(z) == [6] and np.allclose(t.weight[6], 0.5, atol=1e-4)
    assert dice(t.target[6] == 1, labels[12] == 1) > 0.95


def test_finetuning_raises_dice_on_the_corrected_slices(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    slices = [9, 16, 23]
    before = predict_volume(network, meta, volume, device="cpu", largest_component=False).labels
    result = finetune(network, meta, volume, truth, {"z": slices}, FinetuneOptions(iterations=25, lr=3e-3, weak_weight=0.0))
    after = predict_volume(result.network, meta, volume, device="cpu", largest_component=False).labels
    d_before = dice(before[slices] == 1, truth[slices] == 1)
    d_after = dice(after[slices] == 1, truth[slices] == 1)
    assert d_after > d_before + 0.2 and d_after > 0.8, (d_before, d_after)
    assert result.iterations == 25 and result.history[-1]["slices"] < result.history[0]["slices"]


def test_batch_norm_statistics_stay_frozen_and_the_input_network_is_untouched(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny(norm="batch")
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    result = finetune(network, meta, volume, truth, "z:12", FinetuneOptions(iterations=3, lr=1e-2))
    after = result.network.state_dict()
    for key, value in before.items():
        assert torch.equal(network.state_dict()[key], value), key  # the caller's network is not changed
        if "running" in key:
            assert torch.equal(after[key], value), key
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.endswith("weight"))
    assert not result.network.training


def test_seconds_budget_and_progress_messages(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    seen: list[tuple[int, int, str]] = []
    result = finetune(
        network, meta, volume, truth, "z:12", FinetuneOptions(seconds=1.5, precision="fp32"), progress=lambda *a: seen.append(a)
    )
    assert result.iterations >= 1 and result.meta.training["seconds"] < 1.5 + 2.0
    steps = [parse_step(m) for _, _, m in seen if parse_step(m)]
    assert [s["iteration"] for s in steps] == list(range(1, result.iterations + 1))
    assert steps[-1]["loss"] == pytest.approx(result.history[-1]["loss"], abs=1e-4)
    assert parse_step(format_step(7, 0.5, 0.25, 0.125)) == {"iteration": 7, "loss": 0.5, "slices": 0.25, "consistency": 0.125}


def test_replay_every_second_iteration(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    other, other_truth = make_blob_volume(SHAPE, seed=9)
    replay = [(Volume(array=other, geometry=_grid()), other_truth)]
    result = finetune(network, meta, volume, truth, "z:12", FinetuneOptions(iterations=4, replay_every=2), replay=replay)
    assert [h["replay"] for h in result.history] == [0.0, 1.0, 0.0, 1.0]
    assert all(h["consistency"] == 0.0 for h in result.history if h["replay"])  # a replay patch is labeled everywhere


def test_model_file_names_its_parent_volume_and_slices(blob_scan, tmp_path: Path) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    parent = save_model(tmp_path / "parent.safetensors", network, meta)
    out = tmp_path / "models" / "tuned.safetensors"
    result = finetune_file(
        parent,
        out,
        volume,
        truth,
        "z:9,23;x:4",
        FinetuneOptions(iterations=2, weak_weight=0.0),
        name="tuned",
        volume_name="scan.nii.gz",
    )
    assert result.path == out
    saved = read_meta(out)
    assert saved.name == "tuned" and saved.parent == "tiny-vnet" and saved.classes == meta.classes
    t = saved.training
    assert t["method"] == "finetune" and t["volume"] == "scan.nii.gz" and t["slices"] == {"z": [9, 23], "x": [4]}
    assert t["iterations"] == 2 and t["seconds"] > 0 and t["supervised_voxels"] == 3 * 32 * 32 - 2 * 32
    loaded, _ = load_model(out)
    for key, value in result.network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_cancel_after_one_iteration_writes_nothing_and_keeps_the_previous_model(blob_scan, tmp_path: Path) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    parent = save_model(tmp_path / "parent.safetensors", network, meta)
    previous = save_model(tmp_path / "round.safetensors", network, meta)  # an earlier round at the output path
    before = previous.read_bytes()
    steps: list[str] = []
    with pytest.raises(CancelledError):
        finetune_file(parent, previous, volume, truth, "z:12", FinetuneOptions(iterations=50),
                      progress=lambda d, t, m: steps.append(m), cancelled=lambda: any(parse_step(m) for m in steps))  # fmt: skip
    assert sum(parse_step(m) is not None for m in steps) == 1
    assert previous.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent.safetensors", "round.safetensors"]
    with pytest.raises(CancelledError):
        finetune_file(parent, tmp_path / "new.safetensors", volume, truth, "z:12", cancelled=lambda: True)
    assert not (tmp_path / "new.safetensors").exists()


@pytest.mark.parametrize(
    ("slices", "message"),
    [("z:40", "outside 0..31"), ("q:3", "bad slice list"), ({}, "no corrected slices")],
)
def test_bad_slices_are_one_line_errors(blob_scan, slices, message: str) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    with pytest.raises(CorrectionError, match=message):
        finetune(network, meta, volume, truth, slices)
    with pytest.raises(CorrectionError, match="differ in shape"):
        finetune(network, meta, volume, truth[:-1], "z:3")
    with pytest.raises(CorrectionError, match="model has 2 classes"):
        finetune(network, meta, volume, truth * 3, "z:16")


def test_finetuning_core_and_command_import_no_gui_modules() -> None:
    code = (
        "import sys, napari_freqseg.training.finetune, napari_freqseg.cli.finetune\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'superqt', 'vispy'))\n"
        "print(','.join(gui))\n"
    )
    env = {"PYTHONPATH": str(Path(napari_freqseg.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(("norm", "expected"), [("instance", (80, 112, 112)), ("group", (80, 112, 112)), ("batch", (64, 64, 64))])
def test_fine_tuning_window_follows_the_model_normalisation(norm: str, expected: tuple[int, int, int]) -> None:
    """Per-window normalisation (instance, group): tune on the window the model segments with;
    frozen batch statistics: a capped window is as good and cheaper."""
    meta = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": norm}, patch_size=[80, 112, 112])
    assert default_patch(meta, build_network(meta)) == expected


def test_weak_labels_between_corrected_slices_add_supervision(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    plain = finetune(network, meta, volume, truth, "z:9,15", FinetuneOptions(iterations=1, weak_weight=0.0))
    weak = finetune(network, meta, volume, truth, "z:9,15", FinetuneOptions(iterations=1, weak_weight=0.3))
    assert FinetuneOptions().weak_weight == 0.0  # off by default (it lowered the gain on la/val)
    assert plain.meta.training["supervised_voxels"] == 2 * 32 * 32
    assert weak.meta.training["supervised_voxels"] == 7 * 32 * 32  # the 5 slices between are added
    assert weak.meta.training["options"]["weak_weight"] == 0.3
    with pytest.raises(Exception, match="weak_weight"):
        FinetuneOptions(weak_weight=1.5)


def test_wise_ft_mix_keeps_that_share_of_the_change(blob_scan) -> None:
    """mix m: every weight is parent + m·(tuned − parent) of the same round (same seed), recorded."""
    volume, truth = blob_scan
    network, meta = _tiny()
    parent = {k: v.clone() for k, v in network.state_dict().items()}
    full = finetune(network, meta, volume, truth, "z:9,16", FinetuneOptions(iterations=3, lr=3e-3, precision="fp32"))
    half = finetune(network, meta, volume, truth, "z:9,16", FinetuneOptions(iterations=3, lr=3e-3, precision="fp32", mix=0.5))
    assert half.meta.training["options"]["mix"] == 0.5
    full_sd, half_sd = full.network.state_dict(), half.network.state_dict()
    moved = 0
    for key, old in parent.items():
        assert torch.equal(network.state_dict()[key], old)  # the parent is not changed
        if old.is_floating_point():
            torch.testing.assert_close(half_sd[key], old + 0.5 * (full_sd[key] - old))
            moved += int(not torch.equal(full_sd[key], old))
    assert moved > 0
    with pytest.raises(Exception, match="mix"):
        FinetuneOptions(mix=0.0)


def test_bfloat16_round_trains_and_says_so(blob_scan) -> None:
    from napari_freqseg.training.finetune import finetune_amp

    volume, truth = blob_scan
    network, meta = _tiny()
    result = finetune(network, meta, volume, truth, "z:9,16,23", FinetuneOptions(iterations=3, precision="bf16", lr=3e-3))
    assert result.meta.training["options"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in result.network.parameters())  # autocast: weights stay float32
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert result.meta.training["precision_used"] in ("bf16", "fp32")
    # a tiny network at a high rate overflows in bfloat16 within a few steps: the round goes on in float32
    hot = finetune(network, meta, volume, truth, "z:9,16,23", FinetuneOptions(iterations=25, precision="bf16", lr=1e-3))
    assert all(np.isfinite(h["loss"]) for h in hot.history)  # without the fallback: NaN from about step 3 here
    assert all(bool(torch.isfinite(p).all()) for p in hot.network.parameters())
    assert finetune_amp("fp32", torch.device("cpu")) is None and finetune_amp("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(Exception, match="precision"):
        FinetuneOptions(precision="fp16")


def test_replay_without_volumes_is_recorded_as_off(blob_scan) -> None:
    volume, truth = blob_scan
    network, meta = _tiny()
    result = finetune(network, meta, volume, truth, "z:9", FinetuneOptions(iterations=1, replay_every=4, precision="fp32"))
    assert result.meta.training["options"]["replay_every"] == 0  # no replay volume: no replay ran
