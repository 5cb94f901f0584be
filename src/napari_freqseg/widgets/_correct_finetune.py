"""The Fine-tune group of the Correct widget: fine-tune a model on the corrected slices in the
background, watch its loss, get the result as a new model file (hot-swapped into the Segment
widget) and re-segment the scan with it, keeping the corrected slices as the person made them.

Thin over `training.finetune_process.finetune_in_process` (fine-tuning in a child process, so
that training never stops the GUI thread) and `inference.layer.segment_layer`, both run through
`Task` (activity panel, Run becomes Cancel). Each round is saved in the user models folder as
`<base model>@<site>-ft<n>.safetensors`; earlier rounds stay in the model list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from napari.utils.theme import get_theme
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QGridLayout, QGroupBox, QLabel, QPushButton, QSpinBox

from ..correction import region_changes
from ..errors import CancelledError, FreqsegError
from ..inference.layer import SegmentResult, segment_layer
from ..io.geometry import Geometry
from ..io.volume import Volume
from ..layers import MODEL_PATH_KEY, full_resolution, geometry_from_layer, uncertainty_layer_data
from ..models.modelfile import read_meta
from ..models.registry import round_path, scan_site, user_models_dir
from ..training.finetune import FinetuneResult, parse_step
from ..training.finetune_process import finetune_in_process
from ._correct_session import scan_path
from ._loss_plot import LossPlot
from ._model_combo import ModelCombo
from ._tasks import Task
from .segment import SegmentWidget, background_priority

if TYPE_CHECKING:
    from .correct import CorrectWidget

BUDGETS = {"iterations": (30, 1, 100_000), "seconds": (60, 5, 86_400)}  # default, minimum, maximum


class FinetunePanel(QGroupBox):
    """Model, budget, Fine-tune/Cancel, live loss plot, Re-segment."""

    def __init__(self, owner: CorrectWidget) -> None:
        super().__init__("Fine-tune")
        self.owner = owner
        self.task: Task | None = None
        self.history: list[dict[str, float]] = []
        self.model_combo = ModelCombo()
        self.model_combo.setToolTip("the model to fine-tune; each round is saved as a new model")
        self.budget_combo = QComboBox()
        self.budget_combo.addItems(list(BUDGETS))
        self.budget_spin = QSpinBox()
        self.run_button = QPushButton("Fine-tune on corrected slices")
        self.resegment_button = QPushButton("Re-segment")
        self.resegment_button.setToolTip("segment the scan with the chosen model; corrected slices are kept")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(3.2, 1.6))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)

        grid = QGridLayout(self)
        grid.addWidget(QLabel("model"), 0, 0)
        grid.addWidget(self.model_combo, 0, 1, 1, 2)
        grid.addWidget(QLabel("budget"), 1, 0)
        grid.addWidget(self.budget_spin, 1, 1)
        grid.addWidget(self.budget_combo, 1, 2)
        grid.addWidget(self.run_button, 2, 0, 1, 3)
        grid.addWidget(self.canvas, 3, 0, 1, 3)
        grid.addWidget(self.resegment_button, 4, 0, 1, 3)
        grid.addWidget(self.status, 5, 0, 1, 3)

        self.budget_combo.currentTextChanged.connect(self._on_budget_kind)
        self.run_button.clicked.connect(self.run_or_cancel)
        self.resegment_button.clicked.connect(self.resegment)
        self._on_budget_kind(self.budget_combo.currentText())
        theme = get_theme(self.owner.viewer.theme)
        self.plot = LossPlot(self.figure, text=theme.text.as_hex(), face=theme.canvas.as_hex())

    # ------------------------------------------------------------------------------ choices
    def _on_budget_kind(self, kind: str) -> None:
        default, low, high = BUDGETS[kind]
        self.budget_spin.setRange(low, high)
        self.budget_spin.setValue(default)
        self.budget_spin.setSuffix(" s" if kind == "seconds" else "")

    def refresh_models(self, select: Path | None = None) -> None:
        """Re-read the bundled and user models (rounds made here stay listed), choosing `select`."""
        self.model_combo.refresh()
        if select is not None:
            self.set_model_path(select)

    def model_path(self) -> Path | None:
        return self.model_combo.model_path()

    def follow_labels(self, labels: Labels | None) -> None:
        """Choose the model that made `labels` (Segment or an earlier round), when its file is still there."""
        path = labels.metadata.get(MODEL_PATH_KEY) if labels is not None else None
        if path and Path(path).is_file():
            self.set_model_path(path)

    def set_model_path(self, path: str | Path) -> None:
        """Select a model file (added to the list if new)."""
        self.model_combo.set_model_path(path)

    def budget(self) -> dict[str, Any]:
        """{'iterations': n} or {'seconds': s}, as chosen."""
        value = self.budget_spin.value()
        return {"seconds": float(value)} if self.budget_combo.currentText() == "seconds" else {"iterations": value}

    # ----------------------------------------------------------------------------- inputs
    def _scan(self) -> tuple[Image, Volume] | None:
        image, labels = self.owner.image_layer, self.owner.labels_layer
        if image is None or labels is None or image.ndim != 3:
            self._say("choose a 3D image and its labels first")
            return None
        if tuple(image.data.shape) != tuple(labels.data.shape):
            self._say(f"{image.name} {image.data.shape} and {labels.name} {labels.data.shape} differ in shape")
            return None
        array = np.asarray(full_resolution(image.data, image.multiscale))
        geometry = geometry_from_layer(array.shape, image.metadata, image.scale, image.translate)
        source = scan_path(image)
        return image, Volume(array=array, geometry=geometry, header=dict(image.metadata.get("header", {})),
                             source=str(source) if source else image.name)  # fmt: skip

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _busy(self, busy: bool, button: QPushButton, idle_text: str) -> None:
        button.setText("Cancel" if busy else idle_text)
        button.setEnabled(True)
        other = self.resegment_button if button is self.run_button else self.run_button
        other.setEnabled(not busy)

    # --------------------------------------------------------------------------- fine-tune
    def run_or_cancel(self) -> None:
        """Start fine-tuning on the corrected slices, or cancel the running job."""
        if self.task is not None:
            self.task.cancel()
            self.run_button.setText("Cancelling…")
            self.resegment_button.setEnabled(False)
            return
        scan, record, model = self._scan(), self.owner.record, self.model_path()
        if scan is None or record is None:
            return
        if not len(record):
            self._say("mark at least one corrected slice first")
            return
        if model is None:
            self._say("choose a model to fine-tune")
            return
        _, volume = scan
        labels = np.array(self.owner.labels_layer.data, copy=True)
        try:  # rounds are named after the model's own name (its file may be e.g. best.safetensors)
            name, output = round_path(read_meta(model).name, scan_site(volume.header, volume.source), user_models_dir())
        except FreqsegError as exc:
            self._say(str(exc))
            return
        job_record, budget = type(record).from_dict(record.to_dict()), self.budget()

        def work(progress: Any, cancelled: Any) -> FinetuneResult:
            result = finetune_in_process(model, output, volume, labels, job_record, name=name, volume_name=volume.source,
                                         progress=progress, cancelled=cancelled, **budget)  # fmt: skip
            if cancelled():  # pressed while the round was being saved: it is not kept (its name was new)
                output.unlink(missing_ok=True)
                raise CancelledError("fine-tuning cancelled; the model is unchanged")
            return result

        if self.history:  # clear the previous round's curve
            self.history = []
            self.plot.update(self.history)
            self.canvas.draw_idle()
        self.task = Task(
            work,
            label=f"Fine-tune {model.stem}",
            on_done=self._finetuned,
            on_error=lambda exc: self._say(str(exc) if isinstance(exc, FreqsegError) else f"failed: {exc}"),
            on_cancelled=lambda: self._say(f"cancelled: no model written, {model.stem} stays selected"),
            on_progress=self._on_progress,
            on_finished=lambda: self._job_finished(self.run_button, "Fine-tune on corrected slices"),
        )
        self._busy(True, self.run_button, "")
        self._say(f"fine-tuning {model.stem} on {len(job_record)} corrected slices ({job_record.spec()})…")
        self.task.start()

    def _on_progress(self, done: int, total: int, message: str) -> None:
        step = parse_step(message)
        if step is not None and (not self.history or step["iteration"] > self.history[-1]["iteration"]):
            self.history.append(step)
            self.plot.update(self.history)
            self.canvas.draw_idle()

    def _job_finished(self, button: QPushButton, idle_text: str) -> None:
        self.task = None
        self._busy(False, button, idle_text)

    def _finetuned(self, result: FinetuneResult) -> None:
        path = result.path
        self.refresh_models(select=path)
        swapped = self._hot_swap(path)
        t = result.meta.training
        self._say(f"saved {result.meta.name} ({t['iterations']} iterations, {t['seconds']:.0f} s)"
                  + (" and selected it in Segment" if swapped else "") + ": press Re-segment")  # fmt: skip

    def _hot_swap(self, path: Path) -> int:
        """Select the new model in every docked Segment widget; how many there were."""
        window = getattr(self.owner.viewer, "window", None)
        docked = list(window.dock_widgets.values()) if window is not None else []
        segmenters = [w for w in docked if isinstance(w, SegmentWidget)]
        for widget in segmenters:
            widget.refresh_models()
            widget.set_model_path(path)
        return len(segmenters)

    # --------------------------------------------------------------------------- re-segment
    def resegment(self) -> None:
        """Segment the scan with the chosen model into the labels being corrected (one undo step);
        corrected slices keep their labels, and an uncertainty 'rank by' layer gets the new map."""
        if self.task is not None:
            self.task.cancel()
            self.resegment_button.setText("Cancelling…")
            return
        scan, model = self._scan(), self.model_path()
        if scan is None or model is None:
            self._say("choose an image, its labels and a model first")
            return
        image, volume = scan
        layer_meta = {"metadata": dict(image.metadata), "scale": tuple(image.scale), "translate": tuple(image.translate)}
        data, target = volume.array, (image, self.owner.labels_layer)

        def work(progress: Any, cancelled: Any) -> SegmentResult:
            background_priority()
            return segment_layer(data, layer_meta, model, "auto", "fast", True, True, progress=progress, cancelled=cancelled)

        self.task = Task(
            work,
            label=f"Re-segment with {model.stem}",
            on_done=lambda result: self._resegmented(result, target),
            on_error=lambda exc: self._say(str(exc) if isinstance(exc, FreqsegError) else f"failed: {exc}"),
            on_cancelled=lambda: self._say("re-segmentation cancelled: labels unchanged"),
            on_finished=lambda: self._job_finished(self.resegment_button, "Re-segment"),
        )
        self._busy(True, self.resegment_button, "")
        self._say(f"segmenting with {model.stem}…")
        self.task.start()

    def _resegmented(self, result: SegmentResult, target: tuple[Image, Labels | None]) -> None:
        """The result goes into the labels it was made for, only while they are still the ones chosen."""
        labels, record = self.owner.labels_layer, self.owner.record
        prediction = result.prediction
        if (
            labels is None
            or record is None
            or (self.owner.image_layer, labels) != target
            or labels not in self.owner.viewer.layers
            or labels.data.shape != prediction.labels.shape
        ):
            self._say("the image or labels changed while segmenting: result dropped, nothing written")
            return
        new = prediction.labels
        keep = record.labeled_mask()
        new[keep] = np.asarray(labels.data)[keep]
        indices, values = region_changes(labels.data, new, None)
        if values.size:
            with labels.block_history():
                labels.data_setitem(indices, values)
        labels.metadata = {**labels.metadata, "freqseg_model": result.model_name, MODEL_PATH_KEY: result.model_path}
        # the uncertainty layer and the suggestions in the next event-loop turn: never two layer
        # refreshes in one GUI step
        QTimer.singleShot(0, lambda: self._update_uncertainty(prediction.uncertainty, prediction.geometry, result.model_name))
        show_info(f"Re-segment: {values.size} voxels changed, {len(record)} corrected slices kept")
        self._say(f"re-segmented with {result.model_name}: {values.size} voxels changed; corrected slices kept")

    def _update_uncertainty(self, uncertainty: np.ndarray | None, geometry: Geometry, model_name: str) -> None:
        """The new uncertainty into the 'rank by' Image layer, or into a new layer that becomes it."""
        if self.owner.labels_layer is None:
            return
        rank = self.owner.rank_combo.layer()
        if uncertainty is None:
            pass
        elif isinstance(rank, Image) and rank.data.shape == uncertainty.shape and "freqseg_model" in rank.metadata:
            rank.data = uncertainty  # an earlier uncertainty map (never another image the person chose to rank by)
        elif rank is None:
            data, kwargs, _ = uncertainty_layer_data(
                uncertainty, geometry, f"{self.owner.labels_layer.name} uncertainty", model_name, visible=False
            )
            layer = self.owner.viewer.add_image(data, **kwargs)
            self.owner.rank_combo.set_layer(layer)
        self.owner.record_changed()
