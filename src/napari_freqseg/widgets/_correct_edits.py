"""The Edit group of the Correct widget: label edits that napari's Labels tools lack, on the
current slice (at once) or the whole volume (in a worker), written through the Labels layer's
undo history so that napari's undo/redo keep working (one undo step per edit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QCheckBox, QComboBox, QGridLayout, QGroupBox, QLabel, QPushButton, QSpinBox

from ..correction import (
    AXIS_NAMES,
    between_key,
    copy_slice,
    fill_holes,
    interpolate_slices,
    region_changes,
    remove_small_components,
    slice_key,
    smooth,
)
from ..errors import CancelledError
from ._tasks import Task

if TYPE_CHECKING:
    from .correct import CorrectWidget

SCOPES = ("this slice", "whole volume")
Edit = Callable[[np.ndarray, "int | None"], np.ndarray]


class EditPanel(QGroupBox):
    """Fill holes, remove small components, smooth, copy a neighbour, interpolate between corrected."""

    def __init__(self, owner: CorrectWidget) -> None:
        super().__init__("Edit")
        self.owner = owner
        self.task: Task | None = None
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.only_selected = QCheckBox("only the selected label")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(1, 1_000_000)
        self.min_size_spin.setValue(20)
        self.min_size_spin.setToolTip("components smaller than this many voxels are removed")
        self.smooth_method = QComboBox()
        self.smooth_method.addItems(["majority", "open-close"])
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 10)
        self.radius_spin.setToolTip("smoothing radius in voxels")
        self.fill_button = QPushButton("Fill holes")
        self.small_button = QPushButton("Remove small")
        self.smooth_button = QPushButton("Smooth")
        self.copy_prev_button = QPushButton("Copy from previous")
        self.copy_next_button = QPushButton("Copy from next")
        self.interp_button = QPushButton("Interpolate between corrected")

        grid = QGridLayout(self)
        grid.addWidget(QLabel("on"), 0, 0)
        grid.addWidget(self.scope_combo, 0, 1)
        grid.addWidget(self.only_selected, 0, 2)
        grid.addWidget(self.fill_button, 1, 0)
        grid.addWidget(self.small_button, 1, 1)
        grid.addWidget(self.min_size_spin, 1, 2)
        grid.addWidget(self.smooth_button, 2, 0)
        grid.addWidget(self.smooth_method, 2, 1)
        grid.addWidget(self.radius_spin, 2, 2)
        grid.addWidget(self.copy_prev_button, 3, 0)
        grid.addWidget(self.copy_next_button, 3, 1)
        grid.addWidget(self.interp_button, 4, 0, 1, 3)

        self.fill_button.clicked.connect(lambda: self.apply("fill holes", fill_holes))
        self.small_button.clicked.connect(
            lambda: self.apply("remove small", lambda a, lab: remove_small_components(a, self.min_size_spin.value(), lab))
        )
        self.smooth_button.clicked.connect(
            lambda: self.apply(
                "smooth", lambda a, lab: smooth(a, self.radius_spin.value(), self.smooth_method.currentText(), lab)
            )
        )
        self.copy_prev_button.clicked.connect(lambda: self.copy_neighbour(-1))
        self.copy_next_button.clicked.connect(lambda: self.copy_neighbour(+1))
        self.interp_button.clicked.connect(self.interpolate_gap)

    def set_slice_tools_enabled(self, enabled: bool) -> None:
        for button in (self.copy_prev_button, self.copy_next_button, self.interp_button):
            button.setEnabled(enabled)

    def _label_choice(self) -> int | None:
        labels = self.owner.labels_layer
        return int(labels.selected_label) if self.only_selected.isChecked() else None

    def _write(self, new: np.ndarray, region: tuple | None, what: str) -> int:
        """Write `new` into `region` of the labels through the layer's undo history (one step)."""
        labels = self.owner.labels_layer
        indices, values = region_changes(labels.data, new, region)
        if values.size:
            with labels.block_history():
                labels.data_setitem(indices, values)
        show_info(f"{what}: {values.size} voxels changed")
        return int(values.size)

    def apply(self, what: str, edit: Edit) -> None:
        """Run `edit(array, label)` on the current slice (at once) or the volume (in a worker)."""
        labels, index, axis = self.owner.labels_layer, self.owner.current_index(), self.owner.axis
        if labels is None or index is None:
            return
        label = self._label_choice()
        if self.scope_combo.currentText() == SCOPES[0]:
            region = slice_key(axis, index)
            self._write(edit(np.asarray(labels.data[region]), label), region, what)
            return
        if self.task is not None:
            show_info("Correct: wait for the running edit to finish")
            return
        volume = np.array(labels.data, copy=True)

        def job(progress: Callable, cancelled: Callable[[], bool]) -> np.ndarray:
            progress(0, 1, what)
            result = edit(volume, label)
            if cancelled():
                raise CancelledError(f"{what} cancelled")
            return result

        self.task = Task(job, f"{what} (volume)", on_done=lambda new: self._merge(labels, volume, new, what))
        self.task.worker.finished.connect(lambda: setattr(self, "task", None))
        self.task.start()

    def _merge(self, labels: Labels, before: np.ndarray, new: np.ndarray, what: str) -> None:
        if labels is not self.owner.labels_layer:
            return
        # Voxels painted while the edit ran keep the painting: only voxels the edit changed, and
        # nobody painted meanwhile, move.
        current = np.asarray(labels.data)
        self._write(np.where((new != before) & (current == before), new, current), None, what)

    def copy_neighbour(self, step: int) -> None:
        """Replace the current slice by its previous (-1) or next (+1) neighbour's labels."""
        labels, index, axis = self.owner.labels_layer, self.owner.current_index(), self.owner.axis
        if labels is None or index is None:
            return
        source = index + step
        if not 0 <= source < labels.data.shape[axis]:
            show_info("Correct: no neighbouring slice there")
            return
        new = copy_slice(labels.data, axis, source, index, self._label_choice())
        self._write(new, slice_key(axis, index), f"copy from slice {source}")

    def interpolate_gap(self) -> None:
        """Interpolate the slices between the two corrected slices around the current one."""
        labels, record, index, axis = self.owner.labels_layer, self.owner.record, self.owner.current_index(), self.owner.axis
        if labels is None or record is None or index is None:
            return
        marked = record.indices(axis)
        below = [i for i in marked if i <= index]
        above = [i for i in marked if i > index]
        if below and above:
            first, last = below[-1], above[0]
        elif len(below) >= 2 and below[-1] == index:
            first, last = below[-2], below[-1]
        else:
            show_info(f"Correct: mark a corrected slice on each side of {AXIS_NAMES[axis]} {index} first")
            return
        in_plane = [s for a, s in enumerate(labels.scale) if a != axis]
        key = between_key(axis, first, last)
        new = interpolate_slices(labels.data, axis, first, last, sampling=in_plane)
        new = np.where(record.labeled_mask()[key], np.asarray(labels.data[key]), new)  # corrected slices of other axes stay
        self._write(new, key, f"interpolate {first}–{last}")
