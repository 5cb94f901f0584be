"""Cohort dock widget: list a multi-centre cohort, open cases as layers, compare sites' intensities.

A thin adapter: `io.cohort.scan_cohort` and `io.cohort.read_cases` do the work in a worker thread
(`Task`); this widget only fills the table and the plot and turns volumes into layers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..io.cohort import Case, CaseInfo, Cohort, read_cases, scan_cohort
from ..io.geometry import fmt_size
from ..io.volume import Volume
from ..layers import image_layer_data, labels_layer_data
from ._site_plot import draw_site_stats
from ._tasks import Task

if TYPE_CHECKING:
    import napari

COLUMNS = ("case", "site", "split", "labeled", "size", "spacing (mm)")


class CohortWidget(QWidget):
    """Pick a manifest or site folder, see its cases and per-site intensity statistics, open cases."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.cohort: Cohort | None = None
        self.infos: list[CaseInfo] = []
        self._task: Task | None = None

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("CSV manifest, or folder with one sub-folder per site")
        self.path_edit.returnPressed.connect(self.load)
        self.file_button = QPushButton("Manifest…")
        self.file_button.clicked.connect(self._browse_file)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.clicked.connect(self._browse_folder)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button = QPushButton("Open selected")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_selected)
        self.status = QLabel("No cohort loaded.")
        self.status.setWordWrap(True)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_cases([self._case_at(row)]))

        self.figure = Figure(figsize=(5, 2.6))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)

        pick = QHBoxLayout()
        pick.addWidget(self.path_edit, 1)
        pick.addWidget(self.file_button)
        pick.addWidget(self.folder_button)
        actions = QHBoxLayout()
        for button in (self.load_button, self.cancel_button, self.open_button):
            actions.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(pick)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.canvas, 1)

    # -- loading -------------------------------------------------------------------------------
    def load(self, path: str | None = None) -> Task | None:
        """Read the cohort at `path` (or the line edit's) in a worker; fill table and plot when done."""
        if path:
            self.path_edit.setText(str(path))
        target = self.path_edit.text().strip()
        if not target or self._task is not None:
            return None
        self.status.setText(f"Reading {target} …")
        return self._start(partial(scan_cohort, target), "Cohort", self._show_cohort)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.status.setText("Cancelling …")

    def _start(self, fn: Callable[..., Any], label: str, on_done: Callable[[Any], None]) -> Task:
        self._task = Task(
            fn,
            label,
            on_done=on_done,
            on_error=lambda exc: self.status.setText(f"Stopped: {exc}"),
            on_cancelled=lambda: self.status.setText("Cancelled."),
            on_progress=lambda done, total, message: self.status.setText(f"{done}/{total} {message}"),
            on_finished=self._idle,
        )
        self.load_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        return self._task.start()

    def _idle(self) -> None:
        self._task = None
        self.load_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._selection_changed()

    def _show_cohort(self, result: tuple[Cohort, list[CaseInfo]]) -> None:
        self.cohort, self.infos = result
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.infos))
        for row, info in enumerate(self.infos):
            case = info.case
            cells = (
                case.case_id,
                case.site,
                case.split,
                "yes" if case.labeled else "no",
                fmt_size(info.size),
                "×".join(f"{s:.3g}" for s in info.spacing),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row)
                item.setToolTip(str(case.image))
                self.table.setItem(row, col, item)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # cohort order until clicked
        self.table.setSortingEnabled(True)
        sites = self.cohort.sites
        labeled = sum(c.labeled for c in self.cohort)
        self.status.setText(
            f"{len(self.cohort)} cases ({labeled} labeled) from {len(sites)} sites: {', '.join(sites)}"
        )
        theme = get_theme(self.viewer.theme)
        draw_site_stats(self.figure, self.infos, text=theme.text.as_hex(), face=theme.background.as_hex())
        self.canvas.draw_idle()

    # -- opening cases -------------------------------------------------------------------------
    def _case_at(self, row: int) -> Case:
        return self.infos[self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)].case

    def selected_cases(self) -> list[Case]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self._case_at(row) for row in rows]

    def _selection_changed(self) -> None:
        self.open_button.setEnabled(self._task is None and bool(self.table.selectionModel().selectedRows()))

    def open_selected(self) -> Task | None:
        return self.open_cases(self.selected_cases())

    def open_cases(self, cases: list[Case]) -> Task | None:
        """Read `cases` in a worker and add each as '<site>/<case>' (+ its label map on the same grid)."""
        if not cases or self._task is not None:
            return None
        return self._start(partial(read_cases, cases), "Opening cases", self._add_layers)

    def _add_layers(self, result: tuple[list[tuple[Case, Volume, Volume | None]], list[str]]) -> None:
        opened, errors = result
        for case, image, label in opened:
            data, kwargs, _ = image_layer_data(image, name=case.display_name)
            self.viewer.add_image(data, **kwargs)
            if label is not None:
                name = f"{case.display_name} label"
                data, kwargs, _ = labels_layer_data(label.array, image.geometry, name, label.metadata(), opacity=0.5)
                self.viewer.add_labels(data, **kwargs)
        for message in errors:
            show_error(message)
        self.status.setText(f"Opened {len(opened)} of {len(opened) + len(errors)} cases.")

    # -- file dialogs --------------------------------------------------------------------------
    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest", "", "CSV manifest (*.csv)")
        if path:
            self.load(path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Cohort folder (one sub-folder per site)")
        if path:
            self.load(path)
