"""Cohort widget's PACS panel against a real Orthanc (tests/orthanc_server.py): search, Load selected
(with Cancel mid-pull, then the same pull continuing), Send to PACS as a DICOM SEG, the refusals."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from orthanc_server import PASSWORD, Orthanc, small_series, use_credentials

from napari_freqseg.io.volume import read_volume
from napari_freqseg.layers import labels_layer_data
from napari_freqseg.pacs import Pacs
from napari_freqseg.widgets import cohort as cohort_module
from napari_freqseg.widgets.cohort import PACS_COLUMNS, CohortWidget


@pytest.fixture
def widget(make_napari_viewer, qtbot, orthanc: Orthanc, monkeypatch, tmp_path: Path) -> CohortWidget:
    """The widget with its PACS panel open on the test server; pulls go to tmp_path/pulled."""
    use_credentials(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default download folder is under it
    w = CohortWidget(viewer)
    qtbot.addWidget(w)
    w.pacs_button.click()
    assert w.pacs_box.isVisibleTo(w)
    assert w.pacs_folder.text() == str(tmp_path / "home" / "freqseg-pacs")
    w.pacs_url.setText(orthanc.url)
    w.pacs_folder.setText(str(tmp_path / "pulled"))
    return w


def wait_idle(qtbot, w: CohortWidget, timeout: int = 60000) -> None:
    qtbot.waitUntil(lambda: w._task is None, timeout=timeout)


def seed(orthanc: Orthanc, folder: Path, patient: str) -> tuple:
    """One study of `patient` on the server: T1 (6 slices) and T2 (4 slices)."""
    t1 = small_series(folder / "t1", patient, series_number=1, description="T1")
    t2 = small_series(folder / "t2", patient, study_uid=t1.study_uid, series_number=2, description="T2", n=4)
    Pacs(orthanc.url).push(sorted((folder / "t1").iterdir()) + sorted((folder / "t2").iterdir()))
    return t1, t2


def search(qtbot, w: CohortWidget, patient: str, modality: str = "") -> list[list[str]]:
    w.pacs_patient.setText(patient)
    w.pacs_modality.setText(modality)
    assert w.search_pacs() is not None
    wait_idle(qtbot, w)
    return [[w.pacs_table.item(r, c).text() for c in range(len(PACS_COLUMNS))] for r in range(w.pacs_table.rowCount())]


def select_row(w: CohortWidget, description: str) -> None:
    (row,) = [r for r in range(w.pacs_table.rowCount()) if w.pacs_table.item(r, 3).text() == description]
    w.pacs_table.clearSelection()
    w.pacs_table.selectRow(row)


def test_search_then_load_selected_adds_the_series_as_an_image(widget: CohortWidget, qtbot, orthanc: Orthanc, tmp_path: Path):
    t1, t2 = seed(orthanc, tmp_path / "seed", "W-SEARCH")
    rows = search(qtbot, widget, "W-SEARCH")
    assert [row[:1] + row[2:] for row in rows] == [["W-SEARCH", "MR", "T1", "6"], ["W-SEARCH", "MR", "T2", "4"]]
    assert widget.status.text() == f"1 study, 2 series on {orthanc.url}"
    assert not widget.pacs_load_button.isEnabled()
    select_row(widget, "T2")
    assert [s.series_uid for _, s in widget.selected_series()] == [t2.series_uid]
    assert widget.pacs_load_button.isEnabled()
    widget.pacs_load_button.click()
    assert widget.cancel_button.isEnabled() and not widget.pacs_search_button.isEnabled()
    wait_idle(qtbot, widget)
    assert widget.status.text() == "Opened 1 of 1 series from the PACS."
    (layer,) = widget.viewer.layers
    folder = tmp_path / "pulled" / t2.series_uid
    assert layer.name == "W-SEARCH/T2" and layer.data.shape == (4, 12, 16)
    assert layer.metadata["source"] == str(folder) and len(list(folder.glob("*.dcm"))) == 4
    assert layer.metadata["header"]["0020|000e"] == t2.series_uid
    np.testing.assert_allclose(layer.scale, (2.0, 0.8, 0.8))
    assert search(qtbot, widget, "NOBODY-HERE") == [] and widget.status.text() == f"No study on {orthanc.url} matches."


def test_cancel_during_a_pull_stops_it_and_the_same_pull_continues(
    widget: CohortWidget, qtbot, orthanc: Orthanc, tmp_path: Path, monkeypatch
):
    t1, _ = seed(orthanc, tmp_path / "seed", "W-CANCEL")
    gate = threading.Event()

    class GatedPacs(Pacs):
        """Holds the pull after its second instance until the test has pressed Cancel."""

        def pull(self, *args, progress=None, **kwargs):
            def step(done: int, total: int, message: str) -> None:
                progress(done, total, message)
                if done == 2:
                    gate.wait(30)

            return super().pull(*args, progress=step, **kwargs)

    monkeypatch.setattr(cohort_module, "Pacs", GatedPacs)
    search(qtbot, widget, "W-CANCEL")
    select_row(widget, "T1")
    assert widget.pull_selected() is not None
    qtbot.waitUntil(lambda: widget.status.text().startswith("2/6"), timeout=30000)
    widget.pacs_cancel_button.click()
    gate.set()
    wait_idle(qtbot, widget)
    assert widget.status.text().startswith("Cancelled. What arrived is kept in")
    assert len(widget.viewer.layers) == 0 and widget.pacs_load_button.isEnabled()
    folder = tmp_path / "pulled" / t1.series_uid
    assert len(list(folder.glob("*.dcm"))) == 2
    widget.pull_selected()  # the same pull continues (the gate is open now)
    wait_idle(qtbot, widget)
    assert len(list(folder.glob("*.dcm"))) == 6 and widget.viewer.layers[0].data.shape == (6, 12, 16)


def test_send_to_pacs_stores_a_seg_over_the_pulled_series(widget: CohortWidget, qtbot, orthanc: Orthanc, tmp_path: Path):
    t1, _ = seed(orthanc, tmp_path / "seed", "W-SEND")
    search(qtbot, widget, "W-SEND")
    select_row(widget, "T1")
    widget.pull_selected()
    wait_idle(qtbot, widget)
    image = widget.viewer.layers["W-SEND/T1"]
    mask = (image.data > 250).astype(np.uint8)
    labels = widget.viewer.add_labels(mask, name="W-SEND/T1 labels", metadata={**image.metadata, "freqseg_classes": ["background", "left atrium"]},
                                      scale=image.scale, translate=image.translate)  # fmt: skip
    assert widget.pacs_labels.layer() is labels and widget.pacs_send_button.isEnabled()
    widget.pacs_send_button.click()
    wait_idle(qtbot, widget)
    assert widget.status.text() == f"Sent 'W-SEND/T1 labels' to {orthanc.url} as a DICOM SEG."
    (study,) = Pacs(orthanc.url).search(patient="W-SEND", modality="SEG")
    (seg,) = study.series
    assert study.study_uid == t1.study_uid and seg.modality == "SEG"
    # and back: the SEG is pulled beside its series and opens as labels on its grid
    assert [row[2:4] for row in search(qtbot, widget, "W-SEND", "SEG")] == [["SEG", seg.description]]
    widget.pacs_table.selectRow(0)
    widget.pull_selected()
    wait_idle(qtbot, widget)
    back = widget.viewer.layers[-1]
    assert back.__class__.__name__ == "Labels" and back.data.shape == mask.shape
    np.testing.assert_array_equal(back.data, mask)


def test_send_to_pacs_of_labels_without_a_dicom_series_sends_nothing(widget: CohortWidget, notifications: list):
    widget.viewer.add_labels(np.ones((4, 12, 16), np.uint8), name="drawn")  # napari's own labels: no DICOM source
    assert widget.send_to_pacs() is None and widget._task is None
    text = widget.status.text()
    assert text.startswith("Send to PACS: 'drawn' was not drawn over a DICOM series") and "nothing was sent" in text
    assert "\n" not in text and not notifications


def test_wrong_password_is_the_401_line_in_the_status(widget: CohortWidget, qtbot, orthanc: Orthanc, tmp_path: Path, monkeypatch):
    small_series(tmp_path / "local", "W-401")
    scan = read_volume(tmp_path / "local")
    data, kwargs, _ = labels_layer_data((scan.array > 250).astype(np.uint8), scan.geometry, "local labels", scan.metadata())
    widget.viewer.add_labels(data, **kwargs)
    monkeypatch.setenv("FREQSEG_PACS_PASSWORD", "wrong")
    assert search(qtbot, widget, "W-401") == []
    text = widget.status.text()
    assert text.startswith("Stopped:") and "not authorised (401)" in text and "\n" not in text
    assert widget.send_to_pacs() is not None
    wait_idle(qtbot, widget)
    text = widget.status.text()
    assert text.startswith("Stopped:") and "not authorised (401)" in text and "\n" not in text
    monkeypatch.setenv("FREQSEG_PACS_PASSWORD", PASSWORD)
    assert Pacs(orthanc.url).search(patient="W-401") == []  # nothing was stored


def test_the_npe2_seg_writer_shares_the_layer_to_seg_function(tmp_path: Path, notifications: list):
    """File > Save as .dcm goes through the same layers.write_labels_seg_file as Send to PACS."""
    from napari_freqseg._writer import write_labels_seg

    small_series(tmp_path / "s", "W-WRITER")
    scan = read_volume(tmp_path / "s")
    data, kwargs, _ = labels_layer_data((scan.array > 250).astype(np.uint8), scan.geometry, "labels", scan.metadata())
    (out,) = write_labels_seg(str(tmp_path / "seg.dcm"), data, kwargs)
    np.testing.assert_array_equal(read_volume(out, like=tmp_path / "s").array, data)
    assert write_labels_seg(str(tmp_path / "x.dcm"), data, {"metadata": {}}) == [] and not (tmp_path / "x.dcm").exists()
    assert "x.dcm: a DICOM SEG is written over the DICOM series the labels belong to" in str(notifications[-1].message)
