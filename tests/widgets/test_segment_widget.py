"""Segment widget in a real viewer: labels on the image's grid, uncertainty layer, Run/Cancel."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from synthetic import make_blob_volume

from napari_freqseg.errors import CancelledError
from napari_freqseg.inference import layer as layer_work
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import Volume
from napari_freqseg.layers import image_layer_data
from napari_freqseg.models import registry
from napari_freqseg.models.preprocess import Normalization
from napari_freqseg.widgets import segment
from napari_freqseg.widgets.segment import SegmentWidget

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def viewer_with_scan(make_napari_viewer, oblique_geometry: Geometry, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "no-user"))
    viewer = make_napari_viewer()
    image, _ = make_blob_volume(oblique_geometry.shape_zyx)
    data, kwargs, _ = image_layer_data(Volume(image, oblique_geometry), name="scan")
    viewer.add_image(data, **kwargs)
    return viewer, image


def test_run_adds_labels_on_the_image_grid(viewer_with_scan, threshold_model, qtbot) -> None:
    viewer, image = viewer_with_scan
    widget = SegmentWidget(viewer)
    assert widget.image_combo.currentText() == "scan"
    assert widget.model_combo.currentData() is None  # nothing installed: only the file chooser
    widget.set_model_path(threshold_model)
    widget.component_check.setChecked(False)
    widget.uncertainty_check.setChecked(True)
    widget.run_button.click()
    assert widget.run_button.text() == "Cancel"
    qtbot.waitUntil(lambda: widget.task is None and "scan uncertainty" in viewer.layers, timeout=60000)
    assert widget.run_button.text() == "Run"
    labels = viewer.layers["scan segmentation"]
    scan = viewer.layers["scan"]
    np.testing.assert_allclose(labels.scale, scan.scale)
    np.testing.assert_allclose(labels.translate, scan.translate)
    assert labels.metadata["freqseg_geometry"] == scan.metadata["freqseg_geometry"]
    assert labels.data.dtype == np.uint8
    np.testing.assert_array_equal(labels.data, Normalization()(image) > 2.0)
    uncertainty = viewer.layers["scan uncertainty"]
    assert uncertainty.data.shape == image.shape and set(labels.metadata["freqseg_slice_scores"]) == {"z", "y", "x"}
    assert "blob" in widget.status.text()
    widget.run_button.click()  # a second run replaces the layers instead of piling up
    qtbot.waitUntil(lambda: widget.task is None, timeout=60000)
    qtbot.wait(300)  # the uncertainty layer follows 50 ms after the labels
    assert [layer.name for layer in viewer.layers] == ["scan", "scan segmentation", "scan uncertainty"]


def test_labels_overlay_a_rotated_or_multiscale_image(viewer_with_scan, threshold_model, qtbot) -> None:
    """The labels get the image layer's rotate/shear/affine, and a multiscale image is segmented at
    its full resolution (numpy alone reads its coarsest level)."""
    viewer, image = viewer_with_scan
    scan = viewer.layers["scan"]
    viewer.add_image(image, name="turned", scale=scan.scale, rotate=30, shear=[0.0, 0.0, 0.0], affine=np.diag([1, -1, 1, 1]))
    viewer.add_image([image, image[::2, ::2, ::2]], name="pyramid", multiscale=True, scale=scan.scale)
    widget = SegmentWidget(viewer)
    widget.set_model_path(threshold_model)
    widget.component_check.setChecked(False)
    for name in ("turned", "pyramid"):
        widget.image_combo.set_layer(viewer.layers[name])
        widget.run_button.click()
        qtbot.waitUntil(lambda n=name: widget.task is None and f"{n} segmentation" in viewer.layers, timeout=60000)
        labels, source = viewer.layers[f"{name} segmentation"], viewer.layers[name]
        np.testing.assert_array_equal(labels.data, Normalization()(image) > 2.0)
        np.testing.assert_allclose(labels._data_to_world.affine_matrix, source._data_to_world.affine_matrix)
        np.testing.assert_allclose(labels.extent.world, source.extent.world)


def test_cancel_stops_without_adding_a_layer(viewer_with_scan, threshold_model, qtbot, monkeypatch) -> None:
    viewer, _ = viewer_with_scan
    started = []

    def slow_predict(*args, cancelled=None, progress=None, **kwargs):
        started.append(True)
        while not cancelled():
            time.sleep(0.01)
        raise CancelledError("cancelled")

    monkeypatch.setattr(layer_work, "predict_volume", slow_predict)
    widget = SegmentWidget(viewer)
    widget.set_model_path(threshold_model)
    widget.run_button.click()
    qtbot.waitUntil(lambda: bool(started), timeout=10000)
    widget.run_button.click()
    assert widget.run_button.text() == "Cancelling…"
    qtbot.waitUntil(lambda: widget.task is None, timeout=10000)
    assert widget.status.text() == "Cancelled." and widget.run_button.text() == "Run"
    assert "scan segmentation" not in viewer.layers


def test_errors_show_in_the_widget(viewer_with_scan, tmp_path, qtbot) -> None:
    viewer, _ = viewer_with_scan
    widget = SegmentWidget(viewer)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    widget.set_model_path(tmp_path / "bad.safetensors")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.task is None, timeout=10000)
    assert "not a readable model file" in widget.status.text()
    viewer.layers.clear()
    widget.run_button.click()
    assert widget.status.text() == "Open a 3D image first."


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_background_priority_lowers_only_the_worker_thread() -> None:
    seen = {}

    def worker() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        segment.background_priority(5)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["delta"] == min(5, 19 - main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


def test_harmonise_box_follows_the_model_and_reaches_predict(viewer_with_scan, threshold_model, qtbot, monkeypatch) -> None:
    """Enabled only for a model that carries its training style; when ticked the run harmonises."""
    import dataclasses

    from napari_freqseg.harmonize import DEFAULT_MODE, StyleAccumulator
    from napari_freqseg.models.modelfile import load_model, save_model

    viewer, image = viewer_with_scan
    widget = SegmentWidget(viewer)
    widget.set_model_path(threshold_model)
    assert not widget.harmonize_check.isEnabled() and "no training style" in widget.harmonize_check.toolTip()
    network, meta = load_model(threshold_model)
    acc = StyleAccumulator(meta.patch_size)
    acc.add(Normalization()(image))
    styled = save_model(
        threshold_model.with_name("styled.safetensors"), network, dataclasses.replace(meta, style=acc.result().to_dict())
    )
    widget.set_model_path(styled)
    assert widget.harmonize_check.isEnabled()
    widget.harmonize_check.setChecked(True)
    seen = []
    real = layer_work.predict_volume
    monkeypatch.setattr(layer_work, "predict_volume", lambda *a, **k: seen.append(k["harmonize"]) or real(*a, **k))
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.task is None, timeout=60000)
    assert seen == [DEFAULT_MODE] and "scan segmentation" in viewer.layers
    widget.set_model_path(threshold_model)
    assert not widget.harmonize_check.isChecked() and not widget.harmonize_check.isEnabled()


def test_a_round_tuned_for_the_images_site_is_chosen_and_said(viewer_with_scan, threshold_model, monkeypatch) -> None:
    from synthetic import ThresholdNet, threshold_meta

    from napari_freqseg.models.modelfile import save_model

    tuned = save_model(threshold_model.parent / "threshold@scan-ft1.safetensors", ThresholdNet(threshold=3.0),
                       threshold_meta(name="threshold@scan-ft1", arch_args={"threshold": 3.0}, parent="threshold"))  # fmt: skip
    monkeypatch.setenv(registry.USER_DIR_ENV, str(threshold_model.parent))
    viewer, _ = viewer_with_scan
    widget = SegmentWidget(viewer)
    assert widget.model_combo.currentData() == str(tuned) and "fine-tuned for scan" in widget.status.text()
    widget.set_model_path(threshold_model)  # the person's own choice stays until the image changes
    assert widget.model_combo.currentData() == str(threshold_model.resolve())
    widget.set_model_path(tuned)
    viewer.add_image(viewer.layers["scan"].data.copy(), name="elsewhere", metadata={"source": "elsewhere.nii.gz"})
    widget.image_combo.setCurrentText("elsewhere")  # a scan of another site: the round tuned for "scan" is left
    assert widget.model_combo.currentData() == str(threshold_model.resolve()) and "another site" in widget.status.text()
