"""The "Correct" dock widget: go to the slices where the model is least sure, fix them, mark them.

A thin adapter over `napari_freqseg.correction`: slice ranking (an uncertainty Image layer, or the
disagreement with another Labels layer such as a teacher's prediction), the corrected-slice
record, label edits applied through the Labels layer's undo history, overlays (label boundaries,
a frame on each corrected slice) and crash-safe autosave next to the scan with a restore offer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import Notification, notification_manager, show_error, show_info
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..correction import (
    AXIS_NAMES,
    CorrectionRecord,
    between_key,
    copy_slice,
    disagreement,
    discard_session,
    fill_holes,
    find_session,
    interpolate_slices,
    load_session,
    rank_slices,
    region_changes,
    remove_small_components,
    slice_key,
    slice_scores,
    smooth,
)
from ..errors import CancelledError, FreqsegError
from ..layers import geometry_from_layer, labels_layer_data
from ._autosave import Autosaver, Target
from ._correct_overlays import hide_boundary, is_overlay, remove_overlays, show_boundary, show_marks
from ._layer_combo import LayerCombo
from ._tasks import Task

SCOPES = ("this slice", "whole volume")


def scan_path(layer: Layer | None) -> Path | None:
    """The file or DICOM folder an Image layer was read from, when it still exists."""
    if layer is None:
        return None
    source = layer.metadata.get("source") or layer.source.path
    if not source:
        return None
    p = Path(source)
    return p if p.exists() else None


class CorrectWidget(QWidget):
    """Rank slices, jump to the next suggestion, edit, mark corrected; autosaved per scan."""

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._records: dict[str, CorrectionRecord] = {}
        self._task: Task | None = None
        self._labels: Labels | None = None
        self.autosaver = Autosaver(self)
        self.autosaver.saved.connect(self._on_saved)
        self.autosaver.failed.connect(lambda msg: self._set_session_text(f"autosave failed: {msg}", error=True))

        self.image_combo = LayerCombo(
            napari_viewer, (Image,), exclude=is_overlay, prefer=lambda layer: scan_path(layer) is not None
        )
        self.labels_combo = LayerCombo(napari_viewer, (Labels,), exclude=is_overlay)
        self.rank_combo = LayerCombo(napari_viewer, (Image, Labels), none_text="(none)", exclude=is_overlay)
        self.rank_combo.setToolTip(
            "Image: a per-voxel uncertainty map. Labels: rank by disagreement with the labels being "
            "corrected (e.g. a teacher's prediction)."
        )
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(list(AXIS_NAMES))
        self.gap_spin = QSpinBox()
        self.gap_spin.setRange(0, 100)
        self.gap_spin.setValue(3)
        self.gap_spin.setToolTip("Suggest no slice closer than this to a corrected or better-ranked one")

        self.next_button = QPushButton("Next suggested slice")
        self.mark_button = QPushButton("Mark corrected")
        self.suggest_label = QLabel()
        self.slice_label = QLabel()
        self.slice_label.setTextFormat(Qt.TextFormat.RichText)
        self.corrected_list = QListWidget()
        self.corrected_list.setMaximumHeight(140)

        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.only_selected = QCheckBox("only the selected label")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(1, 1_000_000)
        self.min_size_spin.setValue(20)
        self.smooth_method = QComboBox()
        self.smooth_method.addItems(["majority", "open-close"])
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 10)
        self.fill_button = QPushButton("Fill holes")
        self.small_button = QPushButton("Remove small")
        self.smooth_button = QPushButton("Smooth")
        self.copy_prev_button = QPushButton("Copy from previous")
        self.copy_next_button = QPushButton("Copy from next")
        self.interp_button = QPushButton("Interpolate between corrected")
        self.boundary_check = QCheckBox("show label boundaries")
        self.boundary_check.setChecked(True)

        self.session_label = QLabel()
        self.session_label.setWordWrap(True)
        self.restore_button = QPushButton("Restore saved session")
        self.discard_button = QPushButton("Discard it")

        self._build_layout()
        self._connect()
        self._on_layers_changed()

    # ----------------------------------------------------------------------------------- layout
    def _build_layout(self) -> None:
        inputs = QFormLayout()
        inputs.addRow("image", self.image_combo)
        inputs.addRow("labels", self.labels_combo)
        inputs.addRow("rank by", self.rank_combo)
        axis_row = QHBoxLayout()
        axis_row.addWidget(self.axis_combo)
        axis_row.addWidget(QLabel("min gap"))
        axis_row.addWidget(self.gap_spin)
        inputs.addRow("axis", axis_row)

        review = QGroupBox("Review")
        rl = QVBoxLayout(review)
        buttons = QHBoxLayout()
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.mark_button)
        rl.addLayout(buttons)
        rl.addWidget(self.suggest_label)
        rl.addWidget(self.slice_label)
        rl.addWidget(QLabel("Corrected slices (click to go there)"))
        rl.addWidget(self.corrected_list)

        edit = QGroupBox("Edit")
        el = QGridLayout(edit)
        el.addWidget(QLabel("on"), 0, 0)
        el.addWidget(self.scope_combo, 0, 1)
        el.addWidget(self.only_selected, 0, 2)
        el.addWidget(self.fill_button, 1, 0)
        el.addWidget(self.small_button, 1, 1)
        el.addWidget(self.min_size_spin, 1, 2)
        el.addWidget(self.smooth_button, 2, 0)
        el.addWidget(self.smooth_method, 2, 1)
        el.addWidget(self.radius_spin, 2, 2)
        el.addWidget(self.copy_prev_button, 3, 0)
        el.addWidget(self.copy_next_button, 3, 1)
        el.addWidget(self.interp_button, 4, 0, 1, 3)
        el.addWidget(self.boundary_check, 5, 0, 1, 3)

        session = QGroupBox("Session")
        sl = QVBoxLayout(session)
        sl.addWidget(self.session_label)
        row = QHBoxLayout()
        row.addWidget(self.restore_button)
        row.addWidget(self.discard_button)
        sl.addLayout(row)

        layout = QVBoxLayout(self)
        layout.addLayout(inputs)
        layout.addWidget(review)
        layout.addWidget(edit)
        layout.addWidget(session)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.image_combo.layer_changed.connect(self._on_layers_changed)
        self.labels_combo.layer_changed.connect(self._on_layers_changed)
        self.rank_combo.layer_changed.connect(self._update_suggestion)
        self.axis_combo.currentIndexChanged.connect(self._on_axis_chosen)
        self.gap_spin.valueChanged.connect(self._update_suggestion)
        self.next_button.clicked.connect(self.next_suggested)
        self.mark_button.clicked.connect(self.toggle_mark)
        self.corrected_list.itemClicked.connect(self._on_list_clicked)
        self.fill_button.clicked.connect(lambda: self.apply_edit("fill holes", lambda a, lab: fill_holes(a, lab)))
        self.small_button.clicked.connect(
            lambda: self.apply_edit(
                "remove small", lambda a, lab: remove_small_components(a, self.min_size_spin.value(), lab)
            )
        )
        self.smooth_button.clicked.connect(
            lambda: self.apply_edit(
                "smooth",
                lambda a, lab: smooth(a, self.radius_spin.value(), self.smooth_method.currentText(), lab),
            )
        )
        self.copy_prev_button.clicked.connect(lambda: self.copy_neighbour(-1))
        self.copy_next_button.clicked.connect(lambda: self.copy_neighbour(+1))
        self.interp_button.clicked.connect(self.interpolate_gap)
        self.boundary_check.toggled.connect(self._update_boundary)
        self.restore_button.clicked.connect(self.restore_session)
        self.discard_button.clicked.connect(self.discard_saved_session)
        self.viewer.dims.events.point.connect(self._update_slice_status)
        self.viewer.dims.events.order.connect(self._on_dims_order)
        self.viewer.dims.events.ndisplay.connect(self._update_slice_status)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)

    # ------------------------------------------------------------------------------ state access
    @property
    def image_layer(self) -> Image | None:
        return self.image_combo.layer()

    @property
    def labels_layer(self) -> Labels | None:
        return self.labels_combo.layer()

    def _record_key(self) -> str | None:
        labels = self.labels_layer
        if labels is None:
            return None
        scan = scan_path(self.image_layer)
        return str(scan.resolve()) if scan is not None else f"layer:{labels.name}"

    @property
    def record(self) -> CorrectionRecord | None:
        """The corrected-slice record of the current volume (created empty on first use)."""
        key = self._record_key()
        if key is None:
            return None
        shape = tuple(self.labels_layer.data.shape)
        record = self._records.get(key)
        if record is None or record.shape != shape:
            record = self._records[key] = CorrectionRecord(shape=shape)
        return record

    @property
    def axis(self) -> int:
        """The axis being sliced through: the viewer's, in 2D; the chosen one otherwise."""
        dims = self.viewer.dims
        if dims.ndisplay == 2 and dims.ndim == 3:
            return int(dims.not_displayed[0])
        return self.axis_combo.currentIndex()

    def current_index(self) -> int | None:
        """Index of the current slice along `axis` in the labels' data coordinates."""
        labels = self.labels_layer
        if labels is None or labels.ndim != 3:
            return None
        data_point = labels.world_to_data(self.viewer.dims.point)
        return int(np.clip(np.round(data_point[self.axis]), 0, labels.data.shape[self.axis] - 1))

    # ------------------------------------------------------------------------------- navigation
    def go_to(self, axis: int, index: int) -> None:
        """Show slice `index` along `axis` (switching to 2D and slicing along that axis if needed)."""
        labels = self.labels_layer
        if labels is None:
            return
        dims = self.viewer.dims
        if dims.ndisplay != 2:
            dims.ndisplay = 2
        if tuple(dims.not_displayed) != (axis,):
            dims.order = (axis, *[a for a in range(3) if a != axis])
        position = np.asarray(labels.world_to_data(dims.point), dtype=float)
        position[axis] = index
        dims.set_point(axis, labels.data_to_world(position)[axis])

    def ranking(self) -> list[int]:
        """Slices along `axis`, most uncertain first, corrected ones (and their near neighbours) left out."""
        source, labels, record = self.rank_combo.layer(), self.labels_layer, self.record
        if source is None or labels is None or record is None:
            return []
        data = np.asarray(source.data)
        if data.shape != labels.data.shape:
            show_error(f"Correct: {source.name} has shape {data.shape}, the labels {labels.data.shape}")
            return []
        uncertainty = disagreement(labels.data, data) if isinstance(source, Labels) else data
        scores = slice_scores(uncertainty, self.axis)
        return rank_slices(scores, exclude=record.indices(self.axis), min_distance=self.gap_spin.value())

    def next_suggested(self) -> int | None:
        """Go to the most uncertain slice not corrected yet; its index, or None."""
        ranked = self.ranking()
        if not ranked:
            show_info("Correct: no slice to suggest (choose a 'rank by' layer, or all slices are corrected)")
            return None
        self.go_to(self.axis, ranked[0])
        return ranked[0]

    # --------------------------------------------------------------------------------- marking
    def toggle_mark(self) -> None:
        record, index = self.record, self.current_index()
        if record is None or index is None:
            return
        if record.is_marked(self.axis, index):
            record.unmark(self.axis, index)
        else:
            record.mark(self.axis, index)
        self._record_changed()
        self.autosaver.save()

    def mark_current(self) -> None:
        """Mark the current slice as corrected (and autosave)."""
        record, index = self.record, self.current_index()
        if record is not None and index is not None and not record.is_marked(self.axis, index):
            self.toggle_mark()

    def _record_changed(self) -> None:
        record, labels = self.record, self.labels_layer
        if labels is not None and record is not None:
            show_marks(self.viewer, labels, record)
        self._fill_list()
        self._update_slice_status()
        self._update_suggestion()

    def _fill_list(self) -> None:
        self.corrected_list.clear()
        for axis, index in self.record or []:
            item = QListWidgetItem(f"{AXIS_NAMES[axis]} {index}")
            item.setData(Qt.ItemDataRole.UserRole, (axis, index))
            self.corrected_list.addItem(item)

    def _on_list_clicked(self, item: QListWidgetItem) -> None:
        axis, index = item.data(Qt.ItemDataRole.UserRole)
        self.go_to(axis, index)

    # ----------------------------------------------------------------------------------- edits
    def _label_choice(self) -> int | None:
        return int(self.labels_layer.selected_label) if self.only_selected.isChecked() else None

    def _write(self, new: np.ndarray, region: tuple | None, what: str) -> int:
        """Write `new` into `region` of the labels through the layer's undo history (one step)."""
        labels = self.labels_layer
        indices, values = region_changes(labels.data, new, region)
        if values.size:
            with labels.block_history():
                labels.data_setitem(indices, values)
        show_info(f"{what}: {values.size} voxels changed")
        return int(values.size)

    def apply_edit(self, what: str, edit: Callable[[np.ndarray, int | None], np.ndarray]) -> None:
        """Run `edit(array, label)` on the current slice (at once) or the volume (in a worker)."""
        labels, index = self.labels_layer, self.current_index()
        if labels is None or index is None:
            return
        label = self._label_choice()
        if self.scope_combo.currentText() == SCOPES[0]:
            region = slice_key(self.axis, index)
            self._write(edit(np.asarray(labels.data[region]), label), region, what)
            return
        volume = np.array(labels.data, copy=True)

        def job(progress: Callable, cancelled: Callable[[], bool]) -> np.ndarray:
            progress(0, 1, what)
            result = edit(volume, label)
            if cancelled():
                raise CancelledError(f"{what} cancelled")
            return result

        self._run(Task(job, f"{what} (volume)", on_done=lambda new: self._write_if_same(labels, volume, new, what)))

    def _write_if_same(self, labels: Labels, before: np.ndarray, new: np.ndarray, what: str) -> None:
        if labels is not self.labels_layer:
            return
        # Voxels painted while the edit ran keep the painting: only voxels the edit changed move.
        changed = new != before
        target = np.where(changed, new, labels.data)
        self._write(target, None, what)

    def _run(self, task: Task) -> None:
        if self._task is not None:
            show_info("Correct: wait for the running edit to finish")
            return
        self._task = task
        task.worker.finished.connect(lambda: setattr(self, "_task", None))
        task.start()

    def copy_neighbour(self, step: int) -> None:
        """Replace the current slice by its previous (-1) or next (+1) neighbour's labels."""
        labels, index = self.labels_layer, self.current_index()
        if labels is None or index is None:
            return
        source = index + step
        if not 0 <= source < labels.data.shape[self.axis]:
            show_info("Correct: no neighbouring slice there")
            return
        new = copy_slice(labels.data, self.axis, source, index, self._label_choice())
        self._write(new, slice_key(self.axis, index), f"copy from slice {source}")

    def interpolate_gap(self) -> None:
        """Interpolate the slices between the two corrected slices around the current one."""
        labels, record, index = self.labels_layer, self.record, self.current_index()
        if labels is None or record is None or index is None:
            return
        marked = record.indices(self.axis)
        below = [i for i in marked if i <= index]
        above = [i for i in marked if i > index]
        if below and above:
            first, last = below[-1], above[0]
        elif len(below) >= 2 and below[-1] == index:
            first, last = below[-2], below[-1]
        else:
            show_info(f"Correct: mark a corrected slice on each side of {AXIS_NAMES[self.axis]} {index} first")
            return
        in_plane = [s for a, s in enumerate(labels.scale) if a != self.axis]
        new = interpolate_slices(labels.data, self.axis, first, last, sampling=in_plane)
        self._write(new, between_key(self.axis, first, last), f"interpolate {first}–{last}")

    # ---------------------------------------------------------------------------- view updates
    def _on_axis_chosen(self, axis: int) -> None:
        """Slice the viewer along the chosen axis (2D); the dims order handler updates the rest."""
        dims = self.viewer.dims
        if dims.ndisplay == 2 and dims.ndim == 3 and self.axis != axis:
            dims.order = (axis, *[a for a in range(3) if a != axis])
        else:
            self._update_suggestion()

    def _on_dims_order(self, *_: object) -> None:
        if self.viewer.dims.ndisplay == 2 and self.viewer.dims.ndim == 3:
            self.axis_combo.blockSignals(True)
            self.axis_combo.setCurrentIndex(self.axis)
            self.axis_combo.blockSignals(False)
        self._update_slice_status()
        self._update_suggestion()

    def _update_suggestion(self, *_: object) -> None:
        if self.rank_combo.layer() is None:
            self.suggest_label.setText("choose a 'rank by' layer to get suggestions")
            return
        ranked = self.ranking()
        axis = AXIS_NAMES[self.axis]
        if ranked:
            self.suggest_label.setText(f"most uncertain ({axis}): {', '.join(str(i) for i in ranked[:5])}")
        else:
            self.suggest_label.setText(f"no uncertain slice left along {axis}")

    def _update_slice_status(self, *_: object) -> None:
        record, index = self.record, self.current_index()
        enabled = index is not None and self.viewer.dims.ndisplay == 2
        for w in (self.mark_button, self.copy_prev_button, self.copy_next_button, self.interp_button):
            w.setEnabled(enabled)
        if not enabled or record is None:
            self.slice_label.setText("show a labels layer in 2D to review slices")
            return
        marked = record.is_marked(self.axis, index)
        self.mark_button.setText("Unmark" if marked else "Mark corrected")
        name = f"{AXIS_NAMES[self.axis]} {index} of {record.shape[self.axis]}"
        state = "<b style='color:#33dd55'>corrected</b>" if marked else "not corrected"
        self.slice_label.setText(f"slice {name}: {state} · {len(record)} corrected in all")
        self.corrected_list.clearSelection()
        for row in range(self.corrected_list.count()):
            item = self.corrected_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == (self.axis, index):
                item.setSelected(True)
                self.corrected_list.scrollToItem(item)

    def _update_boundary(self, *_: object) -> None:
        labels = self.labels_layer
        if labels is None:
            return
        if self.boundary_check.isChecked():
            show_boundary(self.viewer, labels)
        else:
            hide_boundary(self.viewer, labels)

    # ------------------------------------------------------------------------ layers and session
    def _on_layers_changed(self, *_: object) -> None:
        labels = self.labels_layer
        if labels is not self._labels:
            if self._labels is not None:
                self._labels.events.data.disconnect(self._on_labels_data)
            if labels is not None:
                labels.events.data.connect(self._on_labels_data)
            self._labels = labels
        self._on_labels_data()
        self._record_changed()

    def _on_labels_data(self, *_: object) -> None:
        """The labels array was replaced (or the layer changed): follow it."""
        self._update_boundary()
        self._attach_autosave()

    def _on_layer_inserted(self, event: object) -> None:
        layer = event.value
        if isinstance(layer, Image) and not is_overlay(layer):
            scan = scan_path(layer)
            if scan is not None and find_session(scan) is not None:
                self._offer_restore(layer, scan)

    def _on_layer_removed(self, event: object) -> None:
        if isinstance(event.value, Labels) and not is_overlay(event.value):
            remove_overlays(self.viewer, event.value)

    def _offer_restore(self, image: Image, scan: Path) -> None:
        def restore() -> None:
            self.image_combo.set_layer(image)
            self.restore_session()

        notification_manager.dispatch(
            Notification(
                f"{scan.name} has a saved correction session",
                "INFO",
                actions=[("Restore", restore), ("Discard", lambda: self._discard(scan))],
            )
        )

    def _attach_autosave(self, *_: object) -> None:
        """Autosave the labels of the current scan, unless an older session waits to be restored."""
        labels, image, record = self.labels_layer, self.image_layer, self.record
        scan = scan_path(image)
        if labels is None or scan is None or record is None:
            self.autosaver.attach(None)
            self.restore_button.setEnabled(False)
            self.discard_button.setEnabled(False)
            why = "no image with a file" if scan is None else "no labels layer"
            self._set_session_text(f"autosave off: {why}")
            return
        pending = self.autosaver.target is None or self.autosaver.target.scan != scan
        waiting = pending and find_session(scan) is not None
        self.restore_button.setEnabled(waiting)
        self.discard_button.setEnabled(waiting)
        if waiting:
            self.autosaver.attach(None)
            self._set_session_text(f"{scan.name} has a saved session: restore it or discard it to autosave")
            return
        self.autosaver.attach(self._target(scan))
        if pending:
            self._set_session_text(f"autosave to {scan.name}.freqseg every few seconds")

    def _target(self, scan: Path) -> Target:
        labels = self.labels_layer
        geometry = geometry_from_layer(labels.data.shape, labels.metadata, labels.scale, labels.translate)
        return Target(scan=scan, labels=labels.data, record=self.record, geometry=geometry, name=labels.name)

    def restore_session(self) -> None:
        """Load the saved labels and corrected-slice record of the image's scan."""
        image = self.image_layer
        scan = scan_path(image)
        if scan is None:
            return
        try:
            state = load_session(scan)
        except FreqsegError as exc:
            show_error(f"Correct: {exc}")
            return
        image_geometry = geometry_from_layer(image.data.shape, image.metadata, image.scale, image.translate)
        if state.geometry is not None and not state.geometry.same_grid(image_geometry):
            show_error(f"Correct: the saved session of {scan.name} is on another grid than {image.name}")
            return
        layer = next(
            (l for l in self.labels_combo.candidates() if l.name == state.labels_name and l.data.shape == state.labels.shape),
            None,
        )
        if layer is None:
            data, kwargs, _ = labels_layer_data(state.labels, image_geometry, state.labels_name, opacity=0.5)
            layer = self.viewer.add_labels(data, **kwargs)
        else:
            layer.data = state.labels
        self._records[str(scan.resolve())] = state.record
        self.labels_combo.set_layer(layer)
        self.autosaver.attach(self._target(scan), saved_labels=state.labels.copy())
        self.restore_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        self._record_changed()
        stamp = time.strftime("%H:%M:%S", time.localtime(state.saved_at))
        self._set_session_text(f"restored the session saved at {stamp}; autosave on")

    def discard_saved_session(self) -> None:
        scan = scan_path(self.image_layer)
        if scan is not None:
            self._discard(scan)

    def _discard(self, scan: Path) -> None:
        discard_session(scan)
        self._attach_autosave()

    def _on_saved(self, folder: str) -> None:
        self._set_session_text(f"autosaved {time.strftime('%H:%M:%S')} to {Path(folder).name}")

    def _set_session_text(self, text: str, error: bool = False) -> None:
        self.session_label.setText(text)
        self.session_label.setStyleSheet("color: #ff6060" if error else "")

    def closeEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        self.autosaver.save()
        self.autosaver.stop()
        super().closeEvent(event)
