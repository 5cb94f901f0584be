"""The whole human-in-the-loop round in a real viewer (Xvfb), with a screenshot at each stage:
open the LA sample, segment it, correct one slice, mark it, fine-tune, re-segment, save the labels,
read them back (file and viewer) and check their geometry against the scan's file.

A tiny V-Net (2 filters, 1.25 mm, LPS) made on the fly keeps it fast; its grid differs from the
scan's (0.625 mm), so the corrected slice goes through the model-grid mapping both ways. The
screenshots are test artefacts in the test's tmp folder (`screenshots/stage-*.png`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import tiny_vnet_meta

from napari_freqseg._reader import read_layers
from napari_freqseg._sample_data import sample_la, sample_path
from napari_freqseg._writer import write_labels
from napari_freqseg.io.volume import read_volume
from napari_freqseg.models import registry
from napari_freqseg.models.modelfile import build_network, read_meta, save_model
from napari_freqseg.widgets.correct import CorrectWidget
from napari_freqseg.widgets.segment import SegmentWidget

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def tiny_la_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "user"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    meta = tiny_vnet_meta(name="tiny-la", arch_args={"n_filters": 2, "normalization": "instance"},
                          classes=["background", "left atrium"], spacing=[1.25, 1.25, 1.25], orientation="LPS",
                          patch_size=[32, 64, 64])  # fmt: skip
    # a training run's file: its name is not the model's, and rounds are named after the model
    return save_model(tmp_path / "run" / "best.safetensors", build_network(meta), meta)


def test_segment_correct_finetune_resegment_save_reload(make_napari_viewer, qtbot, tmp_path: Path, tiny_la_model: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    viewer = make_napari_viewer(show=True)

    def shot(name: str) -> None:
        qtbot.wait(200)
        viewer.screenshot(str(shots / f"stage-{name}.png"), canvas_only=False)

    for data, kwargs, kind in sample_la():  # File ▸ Open Sample ▸ napari-freqseg ▸ LA
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    truth = viewer.layers["la truth"]
    truth.visible = False
    shot("1-open")

    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.image_combo.setCurrentText("la image")
    segment.set_model_path(tiny_la_model)
    segment.uncertainty_check.setChecked(True)
    segment.run_button.click()
    qtbot.waitUntil(lambda: segment.task is None and "la image uncertainty" in viewer.layers, timeout=60000)
    labels = viewer.layers["la image segmentation"]
    assert labels.data.shape == viewer.layers["la image"].data.shape
    shot("2-segmented")

    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Correct")
    widget.labels_combo.set_layer(labels)
    widget.rank_combo.set_layer(viewer.layers["la image uncertainty"])
    first = widget.next_suggested()
    assert first is not None and widget.current_index() == first
    z = next(i for i in widget.ranking() if truth.data[i].any())  # the person corrects a slice that shows the atrium
    widget.go_to(widget.axis, z)
    assert widget.current_index() == z
    changed = np.nonzero(truth.data[z] != labels.data[z])  # the correction, painted programmatically
    with labels.block_history():  # one stroke, as napari's brush makes it
        labels.data_setitem((np.full(changed[0].size, z), *changed), truth.data[z][changed])
    widget.mark_current()
    assert widget.record.indices("z") == [z]
    shot("3-corrected")

    panel = widget.finetune
    assert panel.model_path() == tiny_la_model
    panel.budget_spin.setValue(3)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    new_model = tmp_path / "user" / "tiny-la@la_CCGAKN4EDT72KC8TTJ76_image-ft1.safetensors"
    assert read_meta(new_model).training["slices"] == {"z": [z]} and len(panel.history) == 3
    assert segment.model_combo.currentData() == str(new_model.resolve())
    shot("4-finetuned")

    panel.resegment_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=60000)
    assert labels.metadata["freqseg_model"] == "tiny-la@la_CCGAKN4EDT72KC8TTJ76_image-ft1"
    np.testing.assert_array_equal(labels.data[z], truth.data[z])  # the corrected slice is kept
    shot("5-resegmented")

    out = tmp_path / "la_corrected_label.nii.gz"  # a label-map name: the reader gives a Labels layer
    written = write_labels(str(out), labels.data, {"metadata": labels.metadata, "scale": labels.scale,
                                                   "translate": labels.translate, "name": labels.name})  # fmt: skip
    assert written == [str(out)]
    reloaded = read_volume(out)
    scan = read_volume(sample_path("la"))
    assert reloaded.geometry.same_grid(scan.geometry) and reloaded.geometry.direction == scan.geometry.direction
    np.testing.assert_array_equal(reloaded.array, labels.data)
    ((data, kwargs, kind),) = read_layers(str(out))  # back into the viewer through the plugin's reader
    assert kind == "labels"
    back = viewer.add_labels(data, **kwargs)
    image = viewer.layers["la image"]
    np.testing.assert_allclose(back.scale, image.scale)
    np.testing.assert_allclose(back.translate, image.translate)
    assert back.metadata["freqseg_geometry"] == image.metadata["freqseg_geometry"]
    shot("6-reloaded")
    names = ("1-open", "2-segmented", "3-corrected", "4-finetuned", "5-resegmented", "6-reloaded")
    assert sorted(p.name for p in shots.iterdir()) == [f"stage-{s}.png" for s in names]
