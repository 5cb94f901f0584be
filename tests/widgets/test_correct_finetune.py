"""The Fine-tune section of the Correct widget in a real viewer: a round is saved as a new model,
hot-swapped into the Segment widget, plotted live; Re-segment keeps the corrected slices; Cancel
writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_blob_volume, tiny_vnet_meta

from napari_freqseg.correction import find_session, load_session
from napari_freqseg.inference.layer import segment_layer
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume
from napari_freqseg.layers import image_layer_data, labels_layer_data
from napari_freqseg.models import registry
from napari_freqseg.models.modelfile import build_network, read_meta, save_model
from napari_freqseg.widgets.correct import CorrectWidget
from napari_freqseg.widgets.segment import SegmentWidget

pytestmark = pytest.mark.usefixtures("single_thread")
SHAPE = (32, 32, 32)


@pytest.fixture
def setup(make_napari_viewer, qtbot, tmp_path: Path, oblique_geometry: Geometry, monkeypatch: pytest.MonkeyPatch):
    """A scan on disk, its (imperfect) labels, a tiny model in the user folder, Segment and Correct docked."""
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "user"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    meta = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "instance"}, patch_size=[32, 32, 32])
    model = save_model(tmp_path / "user" / "tiny.safetensors", build_network(meta), meta)
    g = Geometry(
        size=SHAPE, spacing=oblique_geometry.spacing, origin=oblique_geometry.origin, direction=oblique_geometry.direction
    )
    image, truth = make_blob_volume(SHAPE)
    scan = read_volume(write_volume(image, g, tmp_path / "scan.nii.gz"))
    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer_data(scan, name="scan")
    viewer.add_image(data, **kwargs)
    labels = truth.copy()
    labels[16] = 0  # the model missed the blob on slice 16
    data, kwargs, _ = labels_layer_data(labels, scan.geometry, "seg", opacity=0.5)
    layer = viewer.add_labels(data, **kwargs)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Correct")
    widget.labels_combo.set_layer(layer)
    return viewer, widget, segment, layer, truth, model


def _correct_and_mark(widget: CorrectWidget, layer, truth: np.ndarray) -> None:
    widget.go_to(0, 16)
    changed = np.nonzero(truth[16] != layer.data[16])  # the person paints the missed blob
    with layer.block_history():
        layer.data_setitem((np.full(changed[0].size, 16), *changed), truth[16][changed])
    widget.mark_current()
    widget.go_to(0, 8)
    widget.mark_current()
    assert widget.record.spec() == "z:8,16"


def _start_a_long_round(widget: CorrectWidget, layer, truth: np.ndarray, model: Path, qtbot):
    """Correct and mark two slices, start a round that would run long, wait for its first iteration."""
    _correct_and_mark(widget, layer, truth)
    panel = widget.finetune
    panel.set_model_path(model)
    panel.budget_spin.setValue(100_000)
    panel.run_button.click()
    qtbot.waitUntil(lambda: len(panel.history) >= 1, timeout=60000)
    return panel


def test_a_round_is_saved_hot_swapped_and_resegment_keeps_the_corrected_slices(setup, qtbot, tmp_path: Path) -> None:
    viewer, widget, segment, layer, truth, model = setup
    _correct_and_mark(widget, layer, truth)
    panel = widget.finetune
    panel.set_model_path(model)
    panel.budget_combo.setCurrentText("iterations")
    panel.budget_spin.setValue(3)
    panel.run_button.click()
    assert panel.run_button.text() == "Cancel" and not panel.resegment_button.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    new = tmp_path / "user" / "tiny-vnet@scan-ft1.safetensors"
    meta = read_meta(new)
    assert meta.parent == "tiny-vnet" and meta.training["slices"] == {"z": [8, 16]} and meta.training["iterations"] == 3
    assert (
        meta.training["volume"] == str(tmp_path / "scan.nii.gz") and meta.training["site"] == "scan"
    )  # named after its scan: no DICOM site
    assert [h["iteration"] for h in panel.history] == [1, 2, 3]  # the live plot got every iteration
    assert panel.model_path() == new and panel.run_button.text() == "Fine-tune on corrected slices"
    assert segment.model_combo.currentData() == str(new.resolve())  # hot-swapped into Segment
    assert "saved tiny-vnet@scan-ft1" in panel.status.text()

    corrected = layer.data[[8, 16]].copy()
    before = layer.data.copy()
    panel.resegment_button.click()
    qtbot.waitUntil(lambda: panel.task is None and widget.rank_combo.layer() is not None, timeout=60000)
    scan = viewer.layers["scan"]
    meta_scan = {"metadata": dict(scan.metadata), "scale": tuple(scan.scale), "translate": tuple(scan.translate)}
    expected = segment_layer(scan.data, meta_scan, new, "cpu", "fast", False, True).prediction.labels
    np.testing.assert_array_equal(layer.data[[8, 16]], corrected)
    others = [z for z in range(SHAPE[0]) if z not in (8, 16)]
    np.testing.assert_array_equal(layer.data[others], expected[others])
    assert layer.metadata["freqseg_model"] == "tiny-vnet@scan-ft1"
    uncertainty = widget.rank_combo.layer()
    assert uncertainty is not None and uncertainty.data.shape == SHAPE and uncertainty.name == "seg uncertainty"
    np.testing.assert_allclose(uncertainty.scale, scan.scale)
    layer.undo()  # re-segmentation is one undo step
    np.testing.assert_array_equal(layer.data, before)

    panel.run_button.click()  # a second round starts from the first and gets the next number
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    assert read_meta(tmp_path / "user" / "tiny-vnet@scan-ft2.safetensors").parent == "tiny-vnet@scan-ft1"
    items = [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())]
    assert any(i.startswith("tiny-vnet@scan-ft1") for i in items) and any(i.startswith("tiny-vnet@scan-ft2") for i in items)


def test_cancel_after_the_first_iteration_writes_nothing(setup, qtbot, tmp_path: Path) -> None:
    _, widget, segment, layer, truth, model = setup
    panel = _start_a_long_round(widget, layer, truth, model, qtbot)
    panel.run_button.click()
    assert panel.run_button.text() == "Cancelling…"
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["tiny.safetensors"]
    assert panel.model_path() == model and "cancelled: no model written" in panel.status.text()
    assert panel.run_button.text() == "Fine-tune on corrected slices" and panel.resegment_button.isEnabled()
    assert segment.model_combo.currentData() == str(model)


def test_nothing_to_finetune_without_corrected_slices(setup) -> None:
    _, widget, _, _, _, model = setup
    panel = widget.finetune
    panel.set_model_path(model)
    panel.run_button.click()
    assert panel.task is None and "mark at least one corrected slice" in panel.status.text()


def test_a_resegmentation_lands_only_in_the_labels_it_was_made_for(setup, qtbot) -> None:
    viewer, widget, segment, layer, truth, model = setup
    panel = widget.finetune
    panel.set_model_path(model)
    other = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="other", scale=layer.scale, translate=layer.translate)
    before, untouched = layer.data.copy(), other.data.copy()
    panel.resegment_button.click()
    widget.labels_combo.set_layer(other)  # the person moves on while it runs
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    np.testing.assert_array_equal(other.data, untouched)
    np.testing.assert_array_equal(layer.data, before)
    assert "result dropped, nothing written" in panel.status.text()


def test_closing_the_dock_with_its_close_button_cancels_the_round_and_saves_the_edits(setup, qtbot, tmp_path: Path) -> None:
    viewer, widget, _, layer, truth, model = setup
    viewer.window.show()
    dock = widget.parentWidget()
    panel = _start_a_long_round(widget, layer, truth, model, qtbot)
    dock.setFloating(True)  # floating, docking again and hiding are not closing: the round goes on
    dock.setFloating(False)
    dock.title.hide_button.click()
    qtbot.wait(200)
    assert panel.task is not None and not panel.task.cancelled
    dock.show()
    layer.data_setitem((np.array([2]), np.array([3]), np.array([4])), 2)  # an edit the timer has not saved yet
    dock.title.close_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    scan = tmp_path / "scan.nii.gz"
    qtbot.waitUntil(lambda: find_session(scan) is not None and load_session(scan).labels[2, 3, 4] == 2, timeout=10000)
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["tiny.safetensors"]  # the round was cancelled
