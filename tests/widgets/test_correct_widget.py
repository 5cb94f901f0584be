"""The Correct dock widget in a real viewer: ranking, marking, undoable edits, overlays, autosave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import make_blob_volume

from napari_freqseg.correction import find_session, load_session
from napari_freqseg.io.volume import read_volume, write_volume
from napari_freqseg.layers import image_layer_data, labels_layer_data
from napari_freqseg.widgets.correct import CorrectWidget

SHAPE = (20, 28, 32)


@pytest.fixture
def scan(tmp_path: Path, oblique_geometry) -> Path:
    """A blob volume on disk with an anisotropic, oblique grid."""
    from napari_freqseg.io.geometry import Geometry

    g = Geometry(size=SHAPE[::-1], spacing=(0.8, 0.9, 2.0), origin=oblique_geometry.origin, direction=oblique_geometry.direction)
    image, _ = make_blob_volume(SHAPE)
    return write_volume(image, g, tmp_path / "case.nii.gz")


def _open(viewer, scan: Path, labels: np.ndarray | None = None, uncertainty: np.ndarray | None = None):
    volume = read_volume(scan)
    data, kwargs, _ = image_layer_data(volume)
    image = viewer.add_image(data, **kwargs)
    if labels is None:
        labels = make_blob_volume(SHAPE)[1]
    data, kwargs, _ = labels_layer_data(labels.copy(), volume.geometry, "seg", opacity=0.5)
    layer = viewer.add_labels(data, **kwargs)
    unc = None
    if uncertainty is not None:
        unc = viewer.add_image(uncertainty, name="uncertainty", scale=image.scale, translate=image.translate, units="mm")
    return image, layer, unc


def _ranked_by(make_napari_viewer, qtbot, scan: Path, uncertainty: np.ndarray):
    """A viewer with the scan, its labels and `uncertainty`, and a Correct widget ranking by it."""
    viewer = make_napari_viewer()
    _, labels, unc = _open(viewer, scan, uncertainty=uncertainty)
    w = _widget(viewer, qtbot)
    w.rank_combo.set_layer(unc)
    w.labels_combo.set_layer(labels)
    return viewer, w


def _widget(viewer, qtbot) -> CorrectWidget:
    widget = CorrectWidget(viewer)
    qtbot.addWidget(widget)
    return widget


def test_next_suggested_goes_to_the_most_uncertain_slice_and_marking_tracks_it(
    make_napari_viewer, qtbot, scan, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u = np.full(SHAPE, 0.01, np.float32)
    u[7] = 0.5
    u[8] = 0.45
    u[14] = 0.3
    u[:, 20] += 0.9
    viewer = make_napari_viewer()
    _, labels, unc = _open(viewer, scan, uncertainty=u)
    w = _widget(viewer, qtbot)
    assert w.labels_layer is labels and w.image_layer.name == "case"
    w.suggest_combo.setCurrentText("this axis")
    w.rank_combo.set_layer(unc)
    w.labels_combo.set_layer(labels)
    assert w.next_suggested() == 7
    assert viewer.dims.not_displayed == (0,) and w.current_index() == 7
    w.toggle_mark()
    assert w.record.indices("z") == [7]
    assert w.corrected_list.count() == 1 and w.corrected_list.item(0).text() == "z 7"
    assert w.corrected_list.item(0).isSelected() and "corrected" in w.slice_label.text()
    marks = [l for l in viewer.layers if l.name == "seg corrected slices"]
    assert len(marks) == 1 and len(marks[0].data) == 1 and np.all(marks[0].data[0][:, 0] == 7)
    # Slice 8 is too close to the corrected 7 (min gap 3): the next suggestion is 14.
    assert w.next_suggested() == 14 and w.current_index() == 14
    assert not w.corrected_list.selectedItems() and w.mark_button.text() == "Mark corrected"
    # Another axis: the viewer slices along y and the suggestion follows.
    w.axis_combo.setCurrentIndex(1)
    assert viewer.dims.not_displayed == (1,)
    assert w.next_suggested() == 20
    w.toggle_mark()
    assert list(w.record) == [(0, 7), (1, 20)] and len(marks[0].data) == 2
    w.toggle_mark()  # unmark
    assert list(w.record) == [(0, 7)]
    assert len(marks[0].data) == 1 and np.all(marks[0].data[0][:, 0] == 7)
    # Clicking a corrected slice in the list goes there.
    w._on_list_clicked(w.corrected_list.item(0))
    assert viewer.dims.not_displayed == (0,) and w.current_index() == 7


def _disc(center, radius, shape=SHAPE[1:]):
    yy, xx = np.indices(shape)
    return ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2).astype(np.uint8)


def test_edits_go_through_the_undo_history(make_napari_viewer, qtbot, scan, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    labels = np.zeros(SHAPE, np.uint8)
    for z in range(3, 17):
        labels[z] = _disc((14, 16), 8)
    labels[10][_disc((14, 16), 3).astype(bool)] = 0  # a hole on slice 10
    labels[10, 2, 2] = 1  # a speck on slice 10
    labels[12, 1, 1] = 1  # a speck on slice 12
    viewer = make_napari_viewer()
    _, layer, _ = _open(viewer, scan, labels=labels)
    w = _widget(viewer, qtbot)
    original = layer.data.copy()
    w.go_to(0, 10)
    w.edits.fill_button.click()
    assert np.all(layer.data[10][_disc((14, 16), 3).astype(bool)] == 1)
    np.testing.assert_array_equal(np.delete(layer.data, 10, 0), np.delete(original, 10, 0))
    w.edits.min_size_spin.setValue(5)
    w.edits.small_button.click()
    assert layer.data[10, 2, 2] == 0 and layer.data[12, 1, 1] == 1  # this slice only
    layer.undo()
    assert layer.data[10, 2, 2] == 1
    layer.undo()
    np.testing.assert_array_equal(layer.data, original)
    layer.redo()
    assert np.all(layer.data[10][_disc((14, 16), 3).astype(bool)] == 1)
    # The whole volume, in a worker: both specks go, as one undo step.
    w.edits.scope_combo.setCurrentIndex(1)
    before = layer.data.copy()
    w.edits.small_button.click()
    qtbot.waitUntil(lambda: w.edits.task is None, timeout=20000)
    assert layer.data[10, 2, 2] == 0 and layer.data[12, 1, 1] == 0
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_copy_from_neighbour_and_interpolate_between_corrected(make_napari_viewer, qtbot, scan, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    labels = np.zeros(SHAPE, np.uint8)
    labels[4] = _disc((14, 16), 4)
    labels[12] = _disc((14, 16), 10)
    viewer = make_napari_viewer()
    _, layer, _ = _open(viewer, scan, labels=labels)
    w = _widget(viewer, qtbot)
    w.go_to(0, 5)
    w.edits.copy_prev_button.click()
    np.testing.assert_array_equal(layer.data[5], layer.data[4])
    layer.undo()
    assert not layer.data[5].any()
    w.go_to(0, 4)
    w.mark_current()
    w.go_to(0, 8)
    w.edits.interp_button.click()  # one corrected slice only: nothing happens
    assert not layer.data[8].any()
    w.go_to(0, 12)
    w.mark_current()
    w.go_to(0, 8)
    w.edits.interp_button.click()
    radii = np.sqrt(layer.data[4:13].sum(axis=(1, 2)) / np.pi)
    assert np.all(np.diff(radii) > 0) and abs(radii[4] - 7) < 0.8
    layer.undo()
    assert not layer.data[5:12].any()
    w.record.mark("y", 14)  # a corrected coronal slice through the gap: the person's labels there stay
    w.record_changed()
    w.go_to(0, 8)
    w.edits.interp_button.click()
    assert layer.data[5:12].any() and not layer.data[5:12, 14].any()


def test_boundary_overlay_shares_the_labels_and_goes_with_them(make_napari_viewer, qtbot, scan, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    image, layer, _ = _open(viewer, scan)
    w = _widget(viewer, qtbot)
    (boundary,) = [l for l in viewer.layers if l.name == "seg boundary"]
    assert boundary.contour == 1 and boundary.data is layer.data
    assert tuple(boundary.scale) == tuple(layer.scale) and tuple(boundary.translate) == tuple(layer.translate)
    assert boundary not in w.labels_combo.candidates()  # overlays are never inputs
    w.boundary_check.setChecked(False)
    assert "seg boundary" not in [l.name for l in viewer.layers]
    w.boundary_check.setChecked(True)
    viewer.layers.remove(layer)
    assert not any(l.name.startswith("seg ") for l in viewer.layers)


def _restore_offer(scan_name: str):
    from napari.utils.notifications import notification_manager

    offers = [n for n in notification_manager.records if n.actions and scan_name in n.message]
    return dict(offers[-1].actions) if offers else None


def test_autosave_then_crash_then_restore_in_a_new_viewer(make_napari_viewer, qtbot, scan, tmp_path):
    from napari_freqseg._writer import write_labels

    viewer = make_napari_viewer()
    image, layer, _ = _open(viewer, scan)
    w = _widget(viewer, qtbot)
    w.session.autosaver.set_interval(200)
    assert "autosave to case.nii.gz.freqseg" in w.session.status_label.text()
    # Nobody edited anything yet: several intervals pass and no session is written.
    qtbot.wait(800)
    assert find_session(scan) is None
    # Paint (no mark): the timer saves it within an interval.
    layer.data_setitem((np.full(5, 3), np.full(5, 4), np.arange(5)), 2)
    qtbot.waitUntil(lambda: find_session(scan) is not None and load_session(scan).labels[3, 4, 0] == 2, timeout=10000)
    assert find_session(scan) == scan.parent / "case.nii.gz.freqseg"
    # A mark saves at once.
    w.go_to(0, 10)
    w.mark_current()
    qtbot.waitUntil(lambda: load_session(scan).record.indices("z") == [10], timeout=10000)
    qtbot.waitUntil(lambda: not w.session.autosaver.busy, timeout=10000)
    saved = layer.data.copy()
    # The crash: an edit after the last save, then the process dies without saving again.
    w.session.autosaver.stop()
    layer.data_setitem((np.array([15]), np.array([15]), np.array([15])), 3)
    viewer.close()

    viewer2 = make_napari_viewer()
    w2 = _widget(viewer2, qtbot)
    volume = read_volume(scan)
    data, kwargs, _ = image_layer_data(volume)
    image2 = viewer2.add_image(data, **kwargs)
    offer = _restore_offer("case.nii.gz")
    assert offer is not None and set(offer) == {"Restore", "Discard"}
    assert w2.image_layer is image2 and w2.session.autosaver.target is None  # the old session is not overwritten
    # The person painted in a labels layer of the same name while the offer waited.
    data, kwargs, _ = labels_layer_data(np.zeros(SHAPE, np.uint8), volume.geometry, "seg")
    waiting = viewer2.add_labels(data, **kwargs)
    p = tuple(np.array([i]) for i in np.argwhere(saved > 0)[0])  # a voxel the session labels
    waiting.data_setitem(p, 3)
    offer["Restore"](object())  # napari calls an action with its notification widget
    restored = w2.labels_layer
    assert restored is waiting and restored.name == "seg"
    np.testing.assert_array_equal(restored.data, saved)
    restored.undo()  # nothing from before the restore comes back
    np.testing.assert_array_equal(restored.data, saved)
    assert restored.data[15, 15, 15] != 3  # the unsaved edit is lost, and only it
    assert w2.record.indices("z") == [10] and w2.corrected_list.item(0).text() == "z 10"
    np.testing.assert_allclose(restored.scale, image2.scale)
    np.testing.assert_allclose(restored.translate, image2.translate)
    assert w2.session.autosaver.target is not None and "restored" in w2.session.status_label.text()
    # Save the restored labels with the layer's writer and read them back on the scan's exact grid.
    out = tmp_path / "seg.nii.gz"
    assert write_labels(
        str(out), restored.data, {"metadata": restored.metadata, "scale": restored.scale, "translate": restored.translate}
    )
    back = read_volume(out)
    assert back.geometry.same_grid(volume.geometry)
    np.testing.assert_array_equal(back.array, saved)


def test_discarding_an_old_session_starts_a_new_one(make_napari_viewer, qtbot, scan):
    from napari_freqseg.correction import CorrectionRecord, save_session

    save_session(scan, np.ones(SHAPE, np.uint8), CorrectionRecord(shape=SHAPE))
    viewer = make_napari_viewer()
    w = _widget(viewer, qtbot)
    _open(viewer, scan)
    assert w.session.restore_button.isEnabled() and w.session.autosaver.target is None
    _restore_offer("case.nii.gz")["Discard"]()
    assert find_session(scan) is None and w.session.autosaver.target is not None
    assert not w.session.restore_button.isEnabled()


def test_this_axis_and_any_axis_suggestions(make_napari_viewer, qtbot, scan, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u = np.full(SHAPE, 0.01, np.float32)
    u[7] = 0.5  # the best axial slice
    u[:, 20] += 0.9  # a coronal slice with more uncertainty in all
    viewer, w = _ranked_by(make_napari_viewer, qtbot, scan, u)
    w.suggest_combo.setCurrentText("this axis")
    assert w.next_suggested() == 7 and viewer.dims.not_displayed == (0,)  # the shown axis only
    w.suggest_combo.setCurrentText("any axis")
    assert w.next_suggested() == 20 and viewer.dims.not_displayed == (1,) and w.axis == 1
    w.toggle_mark()
    assert w.next_suggested() == 7 and viewer.dims.not_displayed == (0,)  # the view follows back to z


def test_axes_in_turn_is_the_default_and_puts_the_nth_slice_on_z_y_x_in_turn(
    make_napari_viewer, qtbot, scan, monkeypatch, tmp_path
):
    """The policy bench_hitl.py --axes mixed measured (1.0-2.1 points above axial slices alone at k = 3)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u = np.full(SHAPE, 0.01, np.float32)
    u[7] += 0.5
    u[:, 20] += 0.9  # the most uncertain slice of all is coronal, but the first suggestion is axial
    u[:, :, 11] += 0.3
    viewer, w = _ranked_by(make_napari_viewer, qtbot, scan, u)
    assert w.suggest_combo.currentText() == "axes in turn"
    seen = []
    for _ in range(4):
        index = w.next_suggested()
        seen.append((w.axis, index))
        w.toggle_mark()
    assert seen[:3] == [(0, 7), (1, 20), (2, 11)] and seen[3][0] == 0 and viewer.dims.not_displayed == (0,)
    assert list(w.record) == sorted(seen)


def test_a_corrected_slice_no_longer_draws_suggestions_to_the_other_axes(make_napari_viewer, qtbot, scan, monkeypatch, tmp_path):
    """The uncertainty of a corrected axial slice is fixed: it must not make every coronal and
    sagittal slice that crosses it look worth correcting."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    u = np.full(SHAPE, 0.01, np.float32)
    u[7] = 0.5
    u[7, 20] = 0.9
    viewer, w = _ranked_by(make_napari_viewer, qtbot, scan, u)
    w.suggest_combo.setCurrentText("any axis")
    assert w.next_suggested() == 7 and w.axis == 0
    w.toggle_mark()
    w.next_suggested()
    assert w.axis == 0 and w.current_index() not in range(5, 10)  # what is left is spread evenly: an axial slice
    assert w.ranking(1)[:1] == [0]  # every coronal slice alike again (y 20 only crossed the corrected row)


def test_labels_of_another_grid_are_never_autosaved_and_new_labels_take_the_scans_grid(make_napari_viewer, qtbot, scan):
    """Labels from napari's "New Labels" on the scan get its oblique grid (saved and autosaved on
    it); labels on another grid are never saved as this scan's session."""
    viewer = make_napari_viewer()
    image, layer, _ = _open(viewer, scan)
    w = _widget(viewer, qtbot)
    fresh = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="new", scale=image.scale, translate=image.translate)
    w.labels_combo.set_layer(fresh)
    assert fresh.metadata["freqseg_geometry"] == image.metadata["freqseg_geometry"]
    assert w.session.autosaver.target is not None and w.session.autosaver.target.labels is fresh.data
    other = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="elsewhere", scale=(3.0, 1.0, 1.0))
    w.labels_combo.set_layer(other)
    assert w.session.autosaver.target is None and "not on" in w.session.status_label.text()
    w.labels_combo.set_layer(layer)
    assert w.session.autosaver.target is not None  # its own session is live, not "waiting"


def test_another_labels_layer_of_the_scan_never_overwrites_its_session_unedited(make_napari_viewer, qtbot, scan):
    """The corrected labels deleted by mistake, the combo falls on a prediction of the same scan:
    the session keeps the corrections until the prediction itself is edited."""
    viewer = make_napari_viewer()
    image, layer, _ = _open(viewer, scan)
    w = _widget(viewer, qtbot)
    w.session.autosaver.set_interval(100)
    layer.data_setitem((np.array([3]), np.array([4]), np.array([5])), 2)
    qtbot.waitUntil(lambda: find_session(scan) is not None and load_session(scan).labels[3, 4, 5] == 2, timeout=10000)
    saved = load_session(scan).labels.copy()
    data, kwargs, _ = labels_layer_data(np.zeros(SHAPE, np.uint8), read_volume(scan).geometry, "prediction")
    prediction = viewer.add_labels(data, **kwargs)
    viewer.layers.remove(layer)
    assert w.labels_layer is prediction
    qtbot.wait(600)
    np.testing.assert_array_equal(load_session(scan).labels, saved)


def test_a_4d_layer_elsewhere_in_the_viewer_does_not_shift_the_slices(make_napari_viewer, qtbot, scan) -> None:
    viewer = make_napari_viewer()
    image, layer, _ = _open(viewer, scan)
    viewer.add_image(np.zeros((2, *SHAPE), np.float32), name="cine", scale=(1.0, *image.scale), translate=(0.0, *image.translate))
    w = _widget(viewer, qtbot)
    assert w.image_layer is image and w.labels_layer is layer  # 4D layers are not offered
    for axis, index in ((0, 5), (1, 7), (2, 3)):
        w.go_to(axis, index)
        assert w.axis == axis and w.current_index() == index
    w.go_to(0, 5)
    w.mark_current()
    assert w.record.indices("z") == [5]
    w.axis_combo.setCurrentIndex(1)  # the axis chosen in the widget slices the viewer there too
    assert w.axis == 1 and viewer.dims.not_displayed == (0, 2)
    w.go_to(2, 3)
    assert w.axis_combo.currentText() == "x"
