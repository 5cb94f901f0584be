"""Segment dock widget: one button that segments the chosen image layer with a model.

A thin adapter: it runs the core's `segment_layer` on the layer's data in a worker through
`Task` (progress in the activity panel, Run turns into Cancel), and adds the labels (and the
uncertainty map, if asked) as layers on the image's exact grid.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.layers import Image, Labels, Layer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QPushButton, QWidget

from ..errors import FreqsegError
from ..inference.device import cuda_available
from ..inference.layer import PRESETS, SegmentResult, segment_layer
from ..layers import MODEL_PATH_KEY, full_resolution, labels_layer_data, placement_kwargs, uncertainty_layer_data
from ._layer_combo import LayerCombo, not_volume
from ._model_combo import ModelCombo
from ._tasks import Task


def background_priority(niceness: int = 10) -> None:
    """Lower the calling (worker) thread's CPU priority on Linux, where threads have their own nice
    value and the math-library threads it starts inherit it: the GUI thread then wins the CPU
    whenever it needs it (measured in benchmarks/bench_ui.py). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class SegmentWidget(QWidget):
    """Image layer + model + device + quality -> a Labels layer (and optional uncertainty layer)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.task: Task | None = None
        self.image_combo = LayerCombo(self.viewer, (Image,), exclude=not_volume)
        self.model_combo = ModelCombo()
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        if not cuda_available():
            self.device_combo.model().item(2).setEnabled(False)
            self.device_combo.setItemData(2, "no CUDA device on this machine", Qt.ItemDataRole.ToolTipRole)
        self.quality_combo = QComboBox()
        self.quality_combo.addItems(list(PRESETS))
        self.quality_combo.setToolTip("fast: 25% window overlap; accurate: 50% overlap + flip test-time augmentation")
        self.uncertainty_check = QCheckBox("uncertainty map")
        self.component_check = QCheckBox("keep largest component")
        self.component_check.setChecked(True)
        self.harmonize_check = QCheckBox("harmonise to the model's training data")
        self.run_button = QPushButton("Run")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Quality", self.quality_combo)
        form.addRow(self.uncertainty_check)
        form.addRow(self.component_check)
        form.addRow(self.harmonize_check)
        form.addRow(self.run_button)
        form.addRow(self.status)
        self.run_button.clicked.connect(self._run_or_cancel)
        self.model_combo.model_changed.connect(lambda _value: self._update_harmonize())
        self.image_combo.layer_changed.connect(lambda _layer: self.prefer_site_model())
        self._update_harmonize()
        self.prefer_site_model()

    # ---- choices ----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Re-read the bundled and user-folder models (files chosen here stay)."""
        self.model_combo.refresh()

    def set_model_path(self, path: str | Path) -> None:
        """Select a model file (added to the list if new)."""
        self.model_combo.set_model_path(path)

    def prefer_site_model(self) -> None:
        """When the chosen model has a round fine-tuned for the image's site, choose that round."""
        from ..models.modelfile import read_meta
        from ..models.registry import base_name, find_model, round_site, scan_site, tuned_for_site

        layer = self.image_combo.layer()
        path = self.model_combo.currentData()
        if layer is None or path is None:
            return
        try:
            name = read_meta(path).name
        except FreqsegError:
            return
        site = scan_site(layer.metadata.get("header", {}), str(layer.metadata.get("source", "") or layer.name))
        tuned = tuned_for_site(name, site)
        if tuned is not None and Path(path).resolve() != tuned.path.resolve():
            self.set_model_path(tuned.path)
            self.status.setText(f"{tuned.name} chosen: fine-tuned for {site}, where this scan comes from")
        elif tuned is None and round_site(name) not in (None, site):  # a round of another centre: back to its base
            try:
                base = find_model(base_name(name))
            except FreqsegError:
                return
            self.set_model_path(base)
            self.status.setText(f"{base_name(name)} chosen: {name} was tuned for another site than this scan's ({site})")

    def _update_harmonize(self) -> None:
        """Harmonising needs a model that carries its training style: say so when it does not."""
        from ..harmonize import DEFAULT_MODE
        from ..models.modelfile import read_meta

        path = self.model_combo.currentData()
        try:
            styled = path is not None and read_meta(path).style is not None
        except FreqsegError:
            styled = False
        self.harmonize_check.setEnabled(styled)
        if not styled:
            self.harmonize_check.setChecked(False)
        self.harmonize_check.setToolTip(
            f"map the scan to the style of the model's training scans first ({DEFAULT_MODE}); measured on held-out LA "
            "scans it did not raise Dice (benchmarks/RESULTS.md): leave it off unless it helps on your own cases" if styled
            else "this model carries no training style (add one: freqseg models style MODEL --from SCANS)"
        )  # fmt: skip

    def _harmonize_mode(self) -> str:
        from ..harmonize import DEFAULT_MODE

        return DEFAULT_MODE if self.harmonize_check.isEnabled() and self.harmonize_check.isChecked() else "off"

    # ---- run --------------------------------------------------------------------------------
    def _run_or_cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.run_button.setEnabled(False)
            self.run_button.setText("Cancelling…")
            return
        name = self.image_combo.currentText()
        model_path = self.model_combo.currentData()
        if not name or name not in self.viewer.layers:
            self.status.setText("Open a 3D image first.")
            return
        if model_path is None:
            self.status.setText("Choose a model: none is installed, pick a model file.")
            return
        layer = self.viewer.layers[name]
        layer_meta = {
            "metadata": dict(layer.metadata),
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "placement": placement_kwargs(layer),
        }
        args = (
            full_resolution(layer.data, layer.multiscale),
            layer_meta,
            Path(model_path),
            self.device_combo.currentText(),
            self.quality_combo.currentText(),
            self.uncertainty_check.isChecked(),
            self.component_check.isChecked(),
            self._harmonize_mode(),
        )

        def work(progress: Any, cancelled: Any) -> tuple[SegmentResult, list[Layer]]:
            background_priority()
            result = segment_layer(*args, progress=progress, cancelled=cancelled)
            return result, result_layers(name, layer_meta, result)

        self.task = Task(
            work,
            label=f"Segment {name}",
            on_done=lambda done: self._add_result(*done),
            on_error=lambda exc: self.status.setText(str(exc) if isinstance(exc, FreqsegError) else f"failed: {exc}"),
            on_cancelled=lambda: self.status.setText("Cancelled."),
            on_finished=self._finished,
        )
        self.status.setText("Segmenting…")
        self.run_button.setText("Cancel")
        self.task.start()

    def _finished(self) -> None:
        self.task = None
        self.run_button.setEnabled(True)
        self.run_button.setText("Run")

    def _add_result(self, result: SegmentResult, layers: list[Layer]) -> None:
        """Put the layers in the viewer in steps 50 ms apart (insert the labels, show them, insert
        the uncertainty map, show it), so that the GUI thread never blocks for more than one
        step: napari builds each layer's controls and visuals there, and draws it when shown."""
        steps: list[Callable[[], None]] = []
        for layer in layers:
            steps += self._put_layer_steps(layer)
        self._run_steps(steps)
        info = result.prediction.info
        found = ", ".join(f"{name} {ml:.1f} ml" for name, ml in result.volumes_ml.items())
        self.status.setText(f"{found} — {info['seconds']:.1f} s on {info['device']}, {info['precision']}")

    def _run_steps(self, steps: list[Callable[[], None]], gap_ms: int = 50) -> None:
        """Run the first step now and each next one `gap_ms` later (a child timer: gone with the
        widget, never firing into a closed viewer)."""
        if not steps:
            return
        steps[0]()
        if len(steps) > 1:
            later = QTimer(self)
            later.setSingleShot(True)
            later.timeout.connect(lambda: self._run_steps(steps[1:], gap_ms))
            later.timeout.connect(later.deleteLater)
            later.start(gap_ms)

    def _put_layer_steps(self, layer: Layer) -> list[Callable[[], None]]:
        """A same-named layer of the same kind gets the new data (one step); else the layer is
        inserted hidden, then shown."""
        old = self.viewer.layers[layer.name] if layer.name in self.viewer.layers else None
        if old is not None and type(old) is type(layer):

            def replace() -> None:
                old.scale, old.translate, old.metadata = layer.scale, layer.translate, layer.metadata
                old.rotate, old.shear, old.affine = layer.rotate, layer.shear, layer.affine
                old.data = layer.data

            return [replace]
        shown = layer.visible
        layer.visible = False

        def show() -> None:
            if layer in self.viewer.layers:
                layer.visible = shown

        return [lambda: self.viewer.layers.append(layer), show]


def result_layers(image_name: str, layer_meta: dict[str, Any], result: SegmentResult) -> list[Layer]:
    """The labels layer (and the uncertainty layer) of a result, built in the worker: napari's
    layer constructors (and the imports they make on first use) then never run in the GUI thread;
    layers not yet in a viewer touch no Qt object."""
    prediction, model_name = result.prediction, result.model_name
    meta = {
        "header": layer_meta["metadata"].get("header", {}),
        "source": layer_meta["metadata"].get("source", ""),
        "freqseg_model": model_name,
        MODEL_PATH_KEY: result.model_path,
        "freqseg_classes": prediction.classes,
        "freqseg_slice_scores": prediction.slice_scores,
    }
    placement = layer_meta.get("placement", {})
    data, kwargs, _ = labels_layer_data(
        prediction.labels, prediction.geometry, f"{image_name} segmentation", meta, opacity=0.5, **placement
    )
    layers: list[Layer] = [Labels(data, **kwargs)]
    if prediction.uncertainty is not None:
        _, u_kwargs, _ = uncertainty_layer_data(
            prediction.uncertainty, prediction.geometry, f"{image_name} uncertainty", model_name, **placement
        )
        layers.append(Image(prediction.uncertainty, **u_kwargs))
    return layers
