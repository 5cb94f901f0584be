"""Cohort dock widget in a real viewer (Xvfb): load in a worker, table, per-site plot, open cases."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QItemSelectionModel, Qt

from napari_freqseg.errors import CancelledError
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import write_volume
from napari_freqseg.widgets import cohort as cohort_module
from napari_freqseg.widgets.cohort import COLUMNS, CohortWidget

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
GRID = Geometry(size=(12, 10, 8), spacing=(0.7, 0.7, 2.0), origin=(5, -3, 1), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def make_cohort(root: Path, bad_label: bool = False) -> Path:
    """Two sites with different intensity ranges; site_b/q1's label is on another grid when `bad_label`."""
    for site, name, mean, grid in (("site_a", "p1", 100, GRID), ("site_a", "p2", 110, GRID), ("site_b", "q1", 400, GRID)):
        folder = root / site
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(mean)
        write_volume(rng.normal(mean, 10, grid.shape_zyx).astype(np.float32), grid, folder / f"{name}.nii.gz")
        label_grid = grid
        if bad_label and name == "q1":
            label_grid = Geometry(grid.size, (0.7, 0.7, 2.5), grid.origin, grid.direction)
        if name != "p2":
            write_volume(np.ones(label_grid.shape_zyx, np.uint8), label_grid, folder / f"{name}_label.nii.gz")
    return root


@pytest.fixture
def widget(make_napari_viewer, qtbot) -> CohortWidget:
    viewer = make_napari_viewer()
    w = CohortWidget(viewer)
    qtbot.addWidget(w)
    return w


def wait_idle(qtbot, w: CohortWidget, timeout: int = 30000) -> None:
    qtbot.waitUntil(lambda: w._task is None, timeout=timeout)


def table_rows(w: CohortWidget) -> list[list[str]]:
    return [[w.table.item(r, c).text() for c in range(len(COLUMNS))] for r in range(w.table.rowCount())]


def test_load_shows_cases_and_site_statistics(widget: CohortWidget, qtbot, tmp_path: Path):
    root = make_cohort(tmp_path / "cohort")
    assert widget.load(str(root)) is not None
    assert not widget.load_button.isEnabled() and widget.cancel_button.isEnabled()
    wait_idle(qtbot, widget)
    assert table_rows(widget) == [
        ["p1", "site_a", "", "yes", "12×10×8", "0.7×0.7×2"],
        ["p2", "site_a", "", "no", "12×10×8", "0.7×0.7×2"],
        ["q1", "site_b", "", "yes", "12×10×8", "0.7×0.7×2"],
    ]
    assert widget.status.text().startswith("3 cases (2 labeled) from 2 sites: site_a, site_b")
    pct_ax, hist_ax = widget.figure.axes
    assert [t.get_text() for t in pct_ax.get_legend().get_texts()] == ["site_a", "site_b"]
    site_lines = [line for line in pct_ax.lines if line.get_label() in ("site_a", "site_b")]
    medians = {line.get_label(): np.median(line.get_ydata()) for line in site_lines}
    assert medians["site_b"] > medians["site_a"] + 200  # the two centres' intensity ranges, side by side
    assert len(hist_ax.lines) == 3
    widget.canvas.draw()
    pixels = np.asarray(widget.canvas.buffer_rgba())
    assert pixels[..., :3].std() > 10


def test_open_selected_adds_layers_on_the_image_grid(widget: CohortWidget, qtbot, tmp_path: Path):
    widget.load(str(make_cohort(tmp_path / "cohort")))
    wait_idle(qtbot, widget)
    widget.table.selectRow(0)
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    widget.table.selectionModel().select(widget.table.model().index(2, 0), flags)
    assert [c.case_id for c in widget.selected_cases()] == ["p1", "q1"]
    assert widget.open_button.isEnabled()
    widget.open_selected()
    wait_idle(qtbot, widget)
    names = [layer.name for layer in widget.viewer.layers]
    assert names == ["site_a/p1", "site_a/p1 label", "site_b/q1", "site_b/q1 label"]
    image, label = widget.viewer.layers["site_b/q1"], widget.viewer.layers["site_b/q1 label"]
    assert tuple(label.scale) == tuple(image.scale) == pytest.approx(GRID.scale_zyx)
    assert tuple(label.translate) == tuple(image.translate) == pytest.approx(GRID.translate_zyx)
    assert label.data.shape == image.data.shape == GRID.shape_zyx
    assert widget.status.text() == "Opened 2 of 2 cases."


def test_sorted_table_still_opens_the_clicked_case(widget: CohortWidget, qtbot, tmp_path: Path):
    widget.load(str(make_cohort(tmp_path / "cohort")))
    wait_idle(qtbot, widget)
    widget.table.sortItems(0, Qt.SortOrder.DescendingOrder)
    assert widget.table.item(0, 0).text() == "q1"
    widget.table.cellDoubleClicked.emit(0, 0)
    wait_idle(qtbot, widget)
    assert [layer.name for layer in widget.viewer.layers] == ["site_b/q1", "site_b/q1 label"]


def test_label_on_another_grid_is_a_notification_others_open(widget: CohortWidget, qtbot, tmp_path: Path, notifications: list):
    widget.load(str(make_cohort(tmp_path / "cohort", bad_label=True)))
    wait_idle(qtbot, widget)
    widget.open_cases(list(widget.cohort))
    wait_idle(qtbot, widget)
    assert [layer.name for layer in widget.viewer.layers] == ["site_a/p1", "site_a/p1 label", "site_a/p2"]
    assert any("site_b/q1: label grid differs from its image: spacing" in str(n.message) for n in notifications)
    assert widget.status.text() == "Opened 2 of 3 cases."


def test_bad_path_is_a_notification_and_the_widget_recovers(widget: CohortWidget, qtbot, tmp_path: Path, notifications: list):
    widget.load(str(tmp_path / "missing.csv"))
    wait_idle(qtbot, widget)
    assert any("missing.csv: no such file or folder" in str(n.message) for n in notifications)
    assert widget.status.text().startswith("Stopped:") and widget.load_button.isEnabled()
    assert widget.table.rowCount() == 0


def test_cancel_stops_the_scan(widget: CohortWidget, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def slow_scan(path, progress=None, cancelled=None):
        for i in range(500):
            if cancelled():
                raise CancelledError("cohort scan cancelled")
            progress(i, 500, f"case {i}")
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(cohort_module, "scan_cohort", slow_scan)
    widget.load(str(tmp_path))
    qtbot.waitUntil(lambda: widget.status.text().startswith(("1/", "2/", "3/")), timeout=10000)
    widget.cancel_button.click()
    wait_idle(qtbot, widget, timeout=5000)
    assert widget.status.text() == "Cancelled."
    assert widget.table.rowCount() == 0 and widget.load_button.isEnabled()


def test_shipped_sample_cohort(widget: CohortWidget, qtbot, tmp_path: Path):
    """The manifest shipped in sample_data, copied elsewhere: three sources, three sites."""
    dest = tmp_path / "samples"
    shutil.copytree(SAMPLES, dest)
    widget.load(str(dest / "cohort.csv"))
    wait_idle(qtbot, widget, timeout=60000)
    assert [row[1] for row in table_rows(widget)] == ["la-challenge", "mni-icbm152", "mni-colin27"]
    assert table_rows(widget)[0][4:] == ["186×139×88", "0.625×0.625×0.625"]
