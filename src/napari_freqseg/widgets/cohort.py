"""Cohort dock widget: list a multi-centre cohort, open cases as layers, compare sites' intensities;
search a PACS, pull series as layers, send a labels layer back as a DICOM SEG.

A thin adapter: `io.cohort.scan_cohort`, `io.cohort.read_cases` and `pacs.Pacs` (search, pull,
push) do the work in a worker thread (`Task`); this widget only fills the tables and the plot and
turns volumes into layers (and a labels layer into a SEG with `layers.write_labels_seg_file`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.utils.notifications import show_error, show_warning
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
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

from ..errors import CancelledError, FreqsegError
from ..io.cohort import Case, CaseInfo, Cohort, read_cases, scan_cohort
from ..io.geometry import fmt_size
from ..io.volume import Volume, read_volume
from ..layers import (
    dicom_series_folder,
    image_layer_data,
    labels_layer_data,
    looks_like_labels,
    write_labels_seg_file,
)
from ..pacs import Pacs, SeriesRecord, StudyRecord, config_path
from ._layer_combo import LayerCombo
from ._site_plot import draw_site_stats
from ._tasks import Task

if TYPE_CHECKING:
    import napari

COLUMNS = ("case", "site", "split", "labeled", "size", "spacing (mm)")
PACS_COLUMNS = ("patient", "date", "modality", "description", "instances")
#: Where pulled series go unless the panel says otherwise (created on the first pull).
PACS_FOLDER = "freqseg-pacs"
Pick = tuple[StudyRecord, SeriesRecord]


# -- PACS jobs (worker thread; the core does the work) -------------------------------------------
def find_studies(url: str, patient: str, modality: str, progress: Any = None, cancelled: Any = None) -> list[StudyRecord]:
    """Studies with their series on `url` matching the (optional) patient ID and modality."""
    return Pacs(url).search(patient=patient or None, modality=modality or None)


def series_name(study: StudyRecord, series: SeriesRecord) -> str:
    """A layer name for a pulled series: '<patient>/<description>'."""
    what = series.description or f"{series.modality or 'series'} {series.number}".strip()
    return f"{study.patient_id or study.patient_name or 'PACS'}/{what}"


def pull_and_read(
    url: str, picks: list[Pick], out: Path, progress: Callable[[int, int, str], None], cancelled: Callable[[], bool]
) -> tuple[list[tuple[str, Volume]], list[str]]:
    """Pull each picked series into OUT/<series UID>/ (resuming), then read each: (name, volume)
    pairs and one-line errors for those that are not readable volumes."""
    pacs = Pacs(url)
    folders = []
    for i, (study, series) in enumerate(picks, start=1):

        def step(done: int, total: int, message: str, i: int = i) -> None:
            progress(done, total, f"series {i}/{len(picks)}: {message}" if len(picks) > 1 else message)

        folders += pacs.pull(study.study_uid, out, series_uid=series.series_uid, progress=step, cancelled=cancelled)
    opened, errors = [], []
    for (study, series), folder in zip(picks, folders, strict=True):
        if cancelled():
            raise CancelledError(f"cancelled: the series are in {out}")
        name = series_name(study, series)
        segs = sorted(folder.glob("*.dcm")) if series.modality.upper() == "SEG" else []
        try:
            opened.append((name, read_volume(segs[0] if len(segs) == 1 else folder)))
        except FreqsegError as exc:
            errors.append(f"{name}: {exc}")
    return opened, errors


def send_labels_seg(
    url: str, data: np.ndarray, meta: dict, name: str, progress: Callable[[int, int, str], None], cancelled: Callable[[], bool]
) -> int:
    """Write labels as a DICOM SEG over their series in a temporary folder and push it to `url`."""
    pacs = Pacs(url)  # a wrong URL or unreadable config fails before the SEG is written
    with tempfile.TemporaryDirectory(prefix="freqseg-seg-") as tmp:
        path = write_labels_seg_file(Path(tmp) / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name) or 'seg'}.dcm", data, meta)
        if cancelled():
            raise CancelledError("Send to PACS cancelled: nothing was sent")
        return pacs.push([path], progress=progress)


def _row_table(columns: tuple[str, ...]) -> QTableWidget:
    """A read-only table whose rows are picked whole (several at once)."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setVisible(False)
    return table


class CohortWidget(QWidget):
    """Pick a manifest or site folder, see its cases and per-site intensity statistics, open cases;
    in the PACS… panel search a server, pull series as layers and send labels back as a DICOM SEG."""

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

        self.table = _row_table(COLUMNS)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_cases([self._case_at(row)]))

        self.pacs_button = QPushButton("PACS…")
        self.pacs_button.setCheckable(True)
        self.pacs_button.setToolTip("Search a PACS (DICOMweb), pull series, send labels back as a DICOM SEG")
        self.pacs_box = self._build_pacs_panel(napari_viewer)
        self.pacs_box.setVisible(False)
        self.pacs_button.toggled.connect(self.pacs_box.setVisible)

        self.figure = Figure(figsize=(5, 2.6))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.canvas.setVisible(False)  # shown with the first cohort's statistics (an empty plot is a blank box)

        pick = QHBoxLayout()
        pick.addWidget(self.path_edit, 1)
        pick.addWidget(self.file_button)
        pick.addWidget(self.folder_button)
        pick.addWidget(self.pacs_button)
        actions = QHBoxLayout()
        for button in (self.load_button, self.cancel_button, self.open_button):
            actions.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(pick)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(self.pacs_box)
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
        """Ask the running job (scan, open, PACS search, pull or send) to stop at its next step."""
        if self._task is not None:
            self._task.cancel()
            self.status.setText("Cancelling …")

    def _start(
        self, fn: Callable[..., Any], label: str, on_done: Callable[[Any], None], cancelled_text: str = "Cancelled."
    ) -> Task:
        """Run `fn` as the widget's one job: action buttons off, Cancel on, progress in the status."""
        self._task = Task(
            fn,
            label,
            on_done=on_done,
            on_error=lambda exc: self.status.setText(f"Stopped: {exc}"),
            on_cancelled=lambda: self.status.setText(cancelled_text),
            on_progress=lambda done, total, message: self.status.setText(f"{done}/{total} {message}"),
            on_finished=self._idle,
        )
        for button in (self.load_button, self.open_button, self.pacs_search_button, self.pacs_load_button, self.pacs_send_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.pacs_cancel_button.setEnabled(True)
        return self._task.start()

    def _idle(self) -> None:
        self._task = None
        self.load_button.setEnabled(True)
        self.pacs_search_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.pacs_cancel_button.setEnabled(False)
        self._selection_changed()
        self._pacs_selection_changed()
        self._pacs_labels_changed()

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
        self.status.setText(f"{len(self.cohort)} cases ({labeled} labeled) from {len(sites)} sites: {', '.join(sites)}")
        theme = get_theme(self.viewer.theme)
        draw_site_stats(self.figure, self.infos, text=theme.text.as_hex(), face=theme.background.as_hex())
        self.canvas.setVisible(True)
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

    # -- PACS ----------------------------------------------------------------------------------
    def _build_pacs_panel(self, viewer: napari.viewer.Viewer) -> QGroupBox:
        """The PACS… panel: server, filters, results, download folder, Load selected, Send to PACS."""
        box = QGroupBox("PACS (DICOMweb)")
        self.pacs_url = QLineEdit()
        self.pacs_url.setPlaceholderText("http://host:8042/dicom-web")
        self.pacs_url.setToolTip(
            "The server's DICOMweb root. Credentials come from FREQSEG_PACS_USER and FREQSEG_PACS_PASSWORD, "
            f"FREQSEG_PACS_TOKEN or {config_path()}; never typed here."
        )
        self.pacs_patient = QLineEdit()
        self.pacs_patient.setPlaceholderText("patient ID (any; * wildcards)")
        self.pacs_modality = QLineEdit()
        self.pacs_modality.setPlaceholderText("modality (any)")
        self.pacs_modality.setMaximumWidth(110)
        self.pacs_search_button = QPushButton("Search")
        self.pacs_search_button.clicked.connect(self.search_pacs)
        for edit in (self.pacs_url, self.pacs_patient, self.pacs_modality):
            edit.returnPressed.connect(self.search_pacs)

        self.pacs_series: list[Pick] = []
        self.pacs_table = _row_table(PACS_COLUMNS)
        self.pacs_table.setMinimumHeight(120)
        self.pacs_table.itemSelectionChanged.connect(self._pacs_selection_changed)
        self.pacs_table.cellDoubleClicked.connect(lambda row, _col: self.pull_series([self._pick_at(row)]))

        self.pacs_folder = QLineEdit(str(Path.home() / PACS_FOLDER))
        self.pacs_folder.setToolTip("Pulled series go to <folder>/<series UID>/; a pull that stopped continues here")
        folder_button = QPushButton("…")
        folder_button.setMaximumWidth(32)
        folder_button.clicked.connect(self._browse_pacs_folder)
        self.pacs_load_button = QPushButton("Load selected")
        self.pacs_load_button.setEnabled(False)
        self.pacs_load_button.clicked.connect(self.pull_selected)
        self.pacs_cancel_button = QPushButton("Cancel")
        self.pacs_cancel_button.setEnabled(False)
        self.pacs_cancel_button.clicked.connect(self.cancel)

        self.pacs_labels = LayerCombo(viewer, (Labels,), prefer=lambda layer: dicom_series_folder(layer.metadata) is not None)
        self.pacs_labels.setToolTip("Labels drawn over a DICOM series, sent as a DICOM SEG over it")
        self.pacs_send_button = QPushButton("Send to PACS")
        self.pacs_send_button.clicked.connect(self.send_to_pacs)
        self.pacs_labels.layer_changed.connect(self._pacs_labels_changed)

        filters = QHBoxLayout()
        filters.addWidget(self.pacs_patient, 1)
        filters.addWidget(self.pacs_modality)
        filters.addWidget(self.pacs_search_button)
        folder = QHBoxLayout()
        folder.addWidget(self.pacs_folder, 1)
        folder.addWidget(folder_button)
        pull = QHBoxLayout()
        pull.addWidget(self.pacs_load_button)
        pull.addWidget(self.pacs_cancel_button)
        send = QHBoxLayout()
        send.addWidget(self.pacs_labels, 1)
        send.addWidget(self.pacs_send_button)
        form = QFormLayout(box)
        form.addRow("URL", self.pacs_url)
        form.addRow("Find", filters)
        form.addRow(self.pacs_table)
        form.addRow("Download to", folder)
        form.addRow(pull)
        form.addRow("Labels", send)
        self._pacs_labels_changed()
        return box

    def show_pacs(self, visible: bool = True) -> None:
        """Show (or hide) the PACS panel."""
        self.pacs_button.setChecked(visible)

    def _pacs_target(self) -> str | None:
        url = self.pacs_url.text().strip()
        if not url:
            self.show_pacs()
            self.status.setText("PACS: enter the server's DICOMweb URL first.")
            return None
        return url

    def search_pacs(self) -> Task | None:
        """Search the server in a worker; fill the PACS table with one row per series."""
        url = self._pacs_target()
        if url is None or self._task is not None:
            return None
        self.status.setText(f"Searching {url} …")
        work = partial(find_studies, url, self.pacs_patient.text().strip(), self.pacs_modality.text().strip())
        return self._start(work, "PACS search", partial(self._show_studies, url))

    def _show_studies(self, url: str, studies: list[StudyRecord]) -> None:
        self.pacs_series = [(study, series) for study in studies for series in study.series]
        self.pacs_table.setSortingEnabled(False)
        self.pacs_table.clearContents()
        self.pacs_table.setRowCount(len(self.pacs_series))
        for row, (study, series) in enumerate(self.pacs_series):
            date = study.date
            cells = (
                study.patient_id or study.patient_name,
                f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else date,
                series.modality,
                series.description,
                "" if series.instances is None else str(series.instances),
            )
            tip = "\n".join(t for t in (study.patient_name, study.description, f"study {study.study_uid}",
                                          f"series {series.series_uid}") if t)  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row)
                item.setToolTip(tip)
                self.pacs_table.setItem(row, col, item)
        self.pacs_table.setSortingEnabled(True)
        n_studies = len(studies)
        self.status.setText(
            f"{n_studies} {'study' if n_studies == 1 else 'studies'}, {len(self.pacs_series)} series on {url}"
            if studies else f"No study on {url} matches."
        )  # fmt: skip

    def _pick_at(self, row: int) -> Pick:
        return self.pacs_series[self.pacs_table.item(row, 0).data(Qt.ItemDataRole.UserRole)]

    def selected_series(self) -> list[Pick]:
        """The (study, series) records of the selected PACS rows."""
        rows = sorted({index.row() for index in self.pacs_table.selectionModel().selectedRows()})
        return [self._pick_at(row) for row in rows]

    def _pacs_selection_changed(self) -> None:
        self.pacs_load_button.setEnabled(self._task is None and bool(self.pacs_table.selectionModel().selectedRows()))

    def _pacs_labels_changed(self, *_: object) -> None:
        self.pacs_send_button.setEnabled(self._task is None and self.pacs_labels.layer() is not None)

    def pull_selected(self) -> Task | None:
        return self.pull_series(self.selected_series())

    def pull_series(self, picks: list[Pick]) -> Task | None:
        """Pull `picks` into the download folder in a worker (progress, Cancel), then add each as a layer."""
        url = self._pacs_target()
        folder = self.pacs_folder.text().strip()
        if url is None or not picks or self._task is not None:
            return None
        if not folder:
            self.status.setText("PACS: choose a download folder first.")
            return None
        self.status.setText(f"Pulling {len(picks)} series from {url} …")
        out = Path(folder).expanduser()
        work = partial(pull_and_read, url, list(picks), out)
        return self._start(work, "PACS pull", self._add_pulled,
                           f"Cancelled. What arrived is kept in {out}; Load selected continues the pull.")  # fmt: skip

    def _add_pulled(self, result: tuple[list[tuple[str, Volume]], list[str]]) -> None:
        opened, errors = result
        for name, volume in opened:
            for note in volume.notes:
                show_warning(f"{name}: {note}")
            if looks_like_labels(volume):  # a SEG, on the grid of its series (pulled beside it)
                data, kwargs, _ = labels_layer_data(volume.array, volume.geometry, name, volume.metadata())
                self.viewer.add_labels(data, **kwargs)
            else:  # metadata 'source' = the series folder: Send to PACS writes a SEG over it
                data, kwargs, _ = image_layer_data(volume, name=name)
                self.viewer.add_image(data, **kwargs)
        for message in errors:
            show_error(message)
        self.status.setText(f"Opened {len(opened)} of {len(opened) + len(errors)} series from the PACS.")

    def send_to_pacs(self) -> Task | None:
        """Write the chosen labels layer as a DICOM SEG over its series and push it, in a worker."""
        layer = self.pacs_labels.layer()
        url = self._pacs_target()
        if url is None or self._task is not None:
            return None
        if layer is None:
            self.status.setText("Send to PACS: no labels layer.")
            return None
        if layer.ndim != 3:
            self.status.setText(f"Send to PACS: '{layer.name}' is {layer.ndim}D; a DICOM SEG is written over a 3D series.")
            return None
        if dicom_series_folder(layer.metadata) is None:
            self.status.setText(
                f"Send to PACS: '{layer.name}' was not drawn over a DICOM series (only labels on a scan "
                "opened from a DICOM folder, e.g. pulled here, can be sent as a SEG); nothing was sent."
            )
            return None
        meta = {"metadata": dict(layer.metadata), "scale": tuple(layer.scale), "translate": tuple(layer.translate)}
        work = partial(send_labels_seg, url, np.array(layer.data), meta, layer.name)  # a copy: painting may go on
        self.status.setText(f"Sending '{layer.name}' to {url} …")
        name = layer.name
        return self._start(work, "Send to PACS", lambda _n: self.status.setText(f"Sent '{name}' to {url} as a DICOM SEG."))

    def _browse_pacs_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for pulled series", self.pacs_folder.text())
        if path:
            self.pacs_folder.setText(path)

    # -- file dialogs --------------------------------------------------------------------------
    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort manifest", "", "CSV manifest (*.csv)")
        if path:
            self.load(path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Cohort folder (one sub-folder per site)")
        if path:
            self.load(path)
