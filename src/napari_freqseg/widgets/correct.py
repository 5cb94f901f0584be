"""The "Correct" dock widget: go to the slices where the model is least sure, fix them, mark them.

A thin adapter over `napari_freqseg.correction`: slice ranking (an uncertainty Image layer, or the
disagreement with another Labels layer such as a teacher's prediction), the corrected-slice
record, label edits applied through the Labels layer's undo history, overlays (label boundaries,
a frame on each corrected slice), crash-safe autosave next to the scan with a restore offer, and
fine-tuning on the corrected slices with re-segmentation (`training.finetune`).
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..correction import AXIS_NAMES, CorrectionRecord, disagreement, rank_slices, slice_scores
from ..layers import GEOMETRY_KEY, scan_grid_beneath
from ._correct_edits import EditPanel
from ._correct_finetune import FinetunePanel
from ._correct_overlays import hide_boundary, is_overlay, remove_overlays, show_boundary, show_marks
from ._correct_session import SessionPanel, scan_path
from ._layer_combo import LayerCombo

#: Where "Next suggested slice" looks: the shown axis, the axes in turn, or all three.
SUGGEST_MODES = ("this axis", "axes in turn", "any axis")


class CorrectWidget(QWidget):
    """Rank slices, jump to the next suggestion, edit, mark corrected, fine-tune and re-segment;
    autosaved per scan."""

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        self._dock: QDockWidget | None = None  # the napari dock we are shown in (see showEvent)
        self.viewer = napari_viewer
        self._records: dict[str, CorrectionRecord] = {}
        self._labels: Labels | None = None

        not_3d = lambda layer: is_overlay(layer) or layer.ndim != 3  # noqa: E731 - slices and records are (z, y, x)
        self.image_combo = LayerCombo(napari_viewer, (Image,), exclude=not_3d, prefer=lambda layer: scan_path(layer) is not None)
        self.labels_combo = LayerCombo(napari_viewer, (Labels,), exclude=not_3d)
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
        self.suggest_combo = QComboBox()
        self.suggest_combo.addItems(list(SUGGEST_MODES))
        self.suggest_combo.setCurrentText("axes in turn")
        self.suggest_combo.setToolTip(
            "Next suggested slice: along the shown axis; on z, y, x in turn (the view follows: 1.0-2.1 Dice points "
            "more than axial slices alone after a 3-slice round, benchmarks/RESULTS.md); or the most uncertain of any axis"
        )

        self.next_button = QPushButton("Next suggested slice")
        self.mark_button = QPushButton("Mark corrected")
        self.suggest_label = QLabel()
        self.slice_label = QLabel()
        self.slice_label.setTextFormat(Qt.TextFormat.RichText)
        self.corrected_list = QListWidget()
        self.corrected_list.setMaximumHeight(140)

        self.boundary_check = QCheckBox("show label boundaries")
        self.boundary_check.setChecked(True)
        self.edits = EditPanel(self)
        self.finetune = FinetunePanel(self)
        self.session = SessionPanel(self)

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
        inputs.addRow("suggest", self.suggest_combo)

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
        rl.addWidget(self.boundary_check)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(inputs)
        layout.addWidget(review)
        layout.addWidget(self.edits)
        layout.addWidget(self.finetune)
        layout.addWidget(self.session)
        layout.addStretch(1)
        # The sections are taller than a laptop screen: they scroll, so the window fits the screen
        # (sideways too, when the dock is narrower than they are).
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        # as wide as the sections ask for
        scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def _connect(self) -> None:
        self.image_combo.layer_changed.connect(self._on_layers_changed)
        self.labels_combo.layer_changed.connect(self._on_layers_changed)
        self.rank_combo.layer_changed.connect(self._update_suggestion)
        self.axis_combo.currentIndexChanged.connect(self._on_axis_chosen)
        self.gap_spin.valueChanged.connect(self._update_suggestion)
        self.next_button.clicked.connect(self.next_suggested)
        self.mark_button.clicked.connect(self.toggle_mark)
        self.corrected_list.itemClicked.connect(self._on_list_clicked)
        self.boundary_check.toggled.connect(self._update_boundary)
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

    def use_record(self, record: CorrectionRecord) -> None:
        """Make `record` the current volume's record (after a restore)."""
        key = self._record_key()
        if key is not None:
            self._records[key] = record
        self.record_changed()

    @property
    def axis(self) -> int:
        """The axis being sliced through: the viewer's, in 2D; the chosen one otherwise."""
        dims = self.viewer.dims
        lead = dims.ndim - 3  # a 4D layer in the viewer puts its extra axis in front of the labels' three
        sliced = [a - lead for a in dims.not_displayed if a >= lead]
        if dims.ndisplay == 2 and len(sliced) == 1:
            return int(sliced[0])
        return self.axis_combo.currentIndex()

    def current_index(self) -> int | None:
        """Index of the current slice along `axis` in the labels' data coordinates."""
        labels = self.labels_layer
        if labels is None or labels.ndim != 3:
            return None
        data_point = labels.world_to_data(self.viewer.dims.point[-3:])
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
        self._slice_along(axis)
        lead = dims.ndim - 3
        position = np.asarray(labels.world_to_data(dims.point[-3:]), dtype=float)
        position[axis] = index
        dims.set_point(lead + axis, labels.data_to_world(position)[axis])

    def _slice_along(self, axis: int) -> None:
        """Show the plane across labels axis `axis` (the viewer's last three axes are the labels')."""
        dims = self.viewer.dims
        lead = dims.ndim - 3  # world axes in front of the labels' (a 4D layer elsewhere in the viewer)
        shown = [lead + a for a in range(3) if a != axis]
        if list(dims.displayed) != shown:
            dims.order = (*[a for a in range(dims.ndim) if a not in shown], *shown)

    def ranking(self, axis: int | None = None) -> list[int]:
        """Slices along `axis` (default: the shown one), most uncertain first, corrected ones (and
        their near neighbours) left out."""
        return [i for _, i in self._scored_ranking(self.axis if axis is None else axis)]

    def _scored_ranking(self, axis: int) -> list[tuple[float, int]]:
        """(uncertainty summed over the slice, index), best first, along `axis`."""
        source, labels, record = self.rank_combo.layer(), self.labels_layer, self.record
        if source is None or labels is None or record is None:
            return []
        data = np.asarray(source.data)
        if data.shape != labels.data.shape:
            show_error(f"Correct: {source.name} has shape {data.shape}, the labels {labels.data.shape}")
            return []
        uncertainty = disagreement(labels.data, data) if isinstance(source, Labels) else data
        scores = slice_scores(uncertainty, axis, corrected=record.labeled_mask() if len(record) else None)
        ranked = rank_slices(scores, exclude=record.indices(axis), min_distance=self.gap_spin.value())
        return [(float(scores[i]), i) for i in ranked]

    def next_suggested(self) -> int | None:
        """Go to the most uncertain slice not corrected yet and return its index: along the shown axis,
        along z, y, x in turn (the n-th corrected slice's axis is n mod 3, as `bench_hitl.py --axes
        mixed` measures it), or along whichever axis holds the most uncertainty a correction can fix."""
        mode, record = self.suggest_combo.currentText(), self.record
        if mode == "any axis":
            axes: tuple[int, ...] = (0, 1, 2)
        elif mode == "axes in turn" and record is not None:
            axes = (len(record) % 3,)
        else:
            axes = (self.axis,)
        best = [(ranked[0], axis) for axis in axes if (ranked := self._scored_ranking(axis))]
        if not best:
            show_info("Correct: no slice to suggest (choose a 'rank by' layer, or all slices are corrected)")
            return None
        (_, index), axis = max(best, key=lambda b: b[0][0])
        self.go_to(axis, index)
        return index

    # --------------------------------------------------------------------------------- marking
    def toggle_mark(self) -> None:
        record, index = self.record, self.current_index()
        if record is None or index is None:
            return
        if record.is_marked(self.axis, index):
            record.unmark(self.axis, index)
        else:
            record.mark(self.axis, index)
        self.record_changed()
        self.session.autosaver.save()

    def mark_current(self) -> None:
        """Mark the current slice as corrected (and autosave)."""
        record, index = self.record, self.current_index()
        if record is not None and index is not None and not record.is_marked(self.axis, index):
            self.toggle_mark()

    def record_changed(self) -> None:
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

    # ---------------------------------------------------------------------------- view updates
    def _on_axis_chosen(self, axis: int) -> None:
        """Slice the viewer along the chosen axis (2D); the dims order handler updates the rest."""
        if self.viewer.dims.ndisplay == 2 and self.axis != axis:
            self._slice_along(axis)
        else:
            self._update_suggestion()

    def _on_dims_order(self, *_: object) -> None:
        if self.viewer.dims.ndisplay == 2 and self.viewer.dims.ndim >= 3:
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
        self.mark_button.setEnabled(enabled)
        self.edits.set_slice_tools_enabled(enabled)
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
        self._adopt_grid()
        labels = self.labels_layer
        if labels is not self._labels:
            if self._labels is not None:
                self._labels.events.data.disconnect(self._on_labels_data)
            if labels is not None:
                labels.events.data.connect(self._on_labels_data)
            self._labels = labels
            self.finetune.follow_labels(labels)
        self._on_labels_data()
        self.record_changed()

    def _adopt_grid(self) -> None:
        """A labels layer made in napari ("New Labels") has no stored grid; where it has the image's
        shape, scale and translate it is that image's labels: it gets the image's grid (direction
        included), so it is saved and autosaved on the scan's exact grid."""
        image, labels = self.image_layer, self.labels_layer
        if image is None or labels is None or GEOMETRY_KEY in labels.metadata:
            return
        stored = scan_grid_beneath(image, tuple(labels.data.shape), labels.scale, labels.translate)
        if stored is not None:
            labels.metadata = {**labels.metadata, GEOMETRY_KEY: stored}

    def _on_labels_data(self, *_: object) -> None:
        """The labels array was replaced (or the layer changed): follow it."""
        self._update_boundary()
        self.session.follow()

    def _on_layer_inserted(self, event: object) -> None:
        layer = event.value
        if isinstance(layer, Image) and not is_overlay(layer):
            self.session.offer_restore(layer)

    def _on_layer_removed(self, event: object) -> None:
        if isinstance(event.value, Labels) and not is_overlay(event.value):
            remove_overlays(self.viewer, event.value)

    def _shut_down(self) -> None:
        """Cancel a running fine-tune and save what is not saved yet (the widget is going away)."""
        if self.finetune.task is not None:
            self.finetune.task.cancel()
        self.session.autosaver.save()
        self.session.autosaver.stop()

    def closeEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        self._shut_down()
        super().closeEvent(event)

    def showEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        """Watch the dock we are shown in: napari's close button takes us out and deletes it
        without closing us, so its deletion is when to save and cancel."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and dock is not self._dock:
            self._dock = dock
            dock.destroyed.connect(lambda *_: self._on_dock_destroyed())
        super().showEvent(event)

    def _on_dock_destroyed(self) -> None:
        try:
            removed = self.parentWidget() is None  # napari takes the widget out before deleting its dock
        except RuntimeError:  # deleted with the window, after closeEvent did the work
            return
        if removed:
            self._shut_down()
