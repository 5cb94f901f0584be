"""Augment dock widget: what FDA, TP-RAM, L-AAE and F-ASE do to a volume, and what a model relies on.

The augmented volume and its difference to the original are added on the original's grid (so
they can be saved with its geometry) and shown side by side in the viewer's grid view. "Reliance"
plots the cost of removing each radial frequency band for the chosen model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..frequency.plots import draw_reliance
from ..frequency.reliance import RelianceCurve
from ..frequency.volumes import DEFAULT_BETA, STRENGTH, AugmentResult, augment_volume, volume_reliance
from ..io.geometry import Geometry
from ..io.volume import Volume
from ..layers import full_resolution, image_layer_data, placement_kwargs
from ..models.resolve import RANDOM, resolve_model
from ._frequency_ui import PlotCanvas, layer_volume
from ._layer_combo import LayerCombo, not_volume
from ._model_combo import ModelCombo
from ._tasks import Task, TaskButtons

if TYPE_CHECKING:
    import napari

METHOD_NAMES = {"FDA": "fda", "TP-RAM": "tp-ram", "L-AAE": "laae", "F-ASE": "fase"}
RANDOM_TEXT = "random V-Net (seeded)"
SPECTRUM_KEY = "freqseg_spectrum"
MAX_CURVES = 4


class AugmentWidget(TaskButtons, QWidget):
    """Choose an image, a method, its strength and seed; add the augmented volume and the change."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.curves: list[tuple[str, RelianceCurve]] = []
        not_input = lambda l: SPECTRUM_KEY in l.metadata or not_volume(l)  # noqa: E731

        self.image = LayerCombo(napari_viewer, (Image,), exclude=not_input)
        self.method = QComboBox()
        self.method.addItems(list(METHOD_NAMES))
        self.method.currentTextChanged.connect(self._method_changed)
        self.reference = LayerCombo(napari_viewer, (Image,), exclude=not_input)
        self.reference.setToolTip("a volume from another centre: its low-frequency amplitude is mixed in")
        self.model = ModelCombo(extras=[(RANDOM_TEXT, RANDOM)])
        self.labels = LayerCombo(napari_viewer, (Labels,), none_text="model's own prediction")
        self.beta = QDoubleSpinBox()
        self.beta.setRange(0.005, 0.5)
        self.beta.setDecimals(3)
        self.beta.setSingleStep(0.005)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 10.0)
        self.strength.setDecimals(2)
        self.strength.setSingleStep(0.1)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.direction = QComboBox()
        self.direction.addItems(["up (raise the loss)", "down (lower the loss)"])
        self.steps = QSpinBox()
        self.steps.setRange(1, 20)
        self.bands = QSpinBox()
        self.bands.setRange(2, 32)
        self.bands.setValue(8)
        self.stochastic = QCheckBox("drop over-relied components at random")
        self.side_by_side = QCheckBox("show side by side (grid view)")
        self.side_by_side.setChecked(True)
        self.augment_button = QPushButton("Augment")
        self.augment_button.clicked.connect(self.augment)
        self.reliance_button = QPushButton("Reliance")
        self.reliance_button.setToolTip("cost of removing each radial band, for the chosen model")
        self.reliance_button.clicked.connect(self.reliance)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.action_buttons = (self.augment_button, self.reliance_button)
        self.canvas = PlotCanvas(
            napari_viewer, height=2.4, hint="Reliance: the cost of removing each frequency band appears here"
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.form = QFormLayout()
        for label, widget in (
            ("image", self.image),
            ("method", self.method),
            ("reference", self.reference),
            ("model", self.model),
            ("target", self.labels),
            ("β (box)", self.beta),
            ("strength", self.strength),
            ("seed", self.seed),
            ("direction", self.direction),
            ("steps", self.steps),
            ("bands", self.bands),
            ("", self.stochastic),
        ):
            self.form.addRow(label, widget)
        buttons = QHBoxLayout()
        for b in (self.augment_button, self.reliance_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.side_by_side)
        layout.addLayout(buttons)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        self._method_changed(self.method.currentText())

    # -- form ------------------------------------------------------------------------------------
    @property
    def method_key(self) -> str:
        return METHOD_NAMES[self.method.currentText()]

    def _method_changed(self, text: str) -> None:
        key = METHOD_NAMES[text]
        mixing = key in ("fda", "tp-ram")
        self.beta.setValue(DEFAULT_BETA[key])
        what, default = STRENGTH[key]
        self.strength.setValue(default)
        self.strength.setToolTip(what)
        for widget, visible in (
            (self.reference, mixing),
            (self.model, not mixing),
            (self.labels, not mixing),
            (self.direction, key == "laae"),
            (self.steps, key == "laae"),
            (self.bands, key == "fase"),
            (self.stochastic, key == "fase"),
            (self.beta, key != "fase"),
        ):
            widget.setVisible(visible)
            label = self.form.labelForField(widget)
            if label is not None:
                label.setVisible(visible)

    def set_model_path(self, path: str | None) -> None:
        """Use a model file (None: back to the random V-Net)."""
        if path:
            self.model.set_model_path(path)
        else:
            self.model.set_value(RANDOM)

    def _model_spec(self) -> str:
        """'random' or the chosen model file (what `resolve_model` takes)."""
        return self.model.value() or RANDOM

    # -- running -----------------------------------------------------------------------------------
    def _inputs(self) -> tuple[Image, np.ndarray, Geometry] | None:
        layer = self.image.layer()
        if layer is None:
            show_info("Augment: choose an image layer")
            return None
        data, geometry = layer_volume(layer)
        return layer, data, geometry

    def _labels_array(self, shape: tuple[int, ...]) -> tuple[bool, np.ndarray | None]:
        """(ok, labels or None for the model's own prediction)."""
        layer = self.labels.layer()
        if layer is None:
            return True, None
        data = np.asarray(full_resolution(layer.data, layer.multiscale))
        if data.shape != shape:
            show_error(f"{layer.name}: labels must have the image's size {'×'.join(map(str, shape))}")
            return False, None
        return True, data

    def augment(self) -> Task | None:
        """Run the chosen augmentation in a worker; layers are added when it finishes."""
        inputs = self._inputs()
        if inputs is None:
            return None
        layer, data, geometry = inputs
        key = self.method_key
        kwargs: dict[str, Any] = {
            "beta": self.beta.value(),
            "strength": self.strength.value(),
            "seed": self.seed.value(),
            "direction": 1 if self.direction.currentIndex() == 0 else -1,
            "steps": self.steps.value(),
            "n_bands": self.bands.value(),
            "stochastic": self.stochastic.isChecked(),
        }
        if key in ("fda", "tp-ram"):
            ref = self.reference.layer()
            if ref is None or ref is layer:
                show_info("Augment: choose a reference image from another centre")
                return None
            kwargs["reference"], kwargs["reference_geometry"] = layer_volume(ref)
        else:
            ok, kwargs["labels"] = self._labels_array(data.shape)
            if not ok:
                return None
        spec, seed = self._model_spec(), self.seed.value()

        def work(progress: Any, cancelled: Any) -> AugmentResult:
            model = resolve_model(spec, seed) if key in ("laae", "fase") else None
            return augment_volume(data, geometry, key, model=model, progress=progress, cancelled=cancelled, **kwargs)

        label = self.method.currentText()
        source = (layer.name, data, geometry, dict(layer.metadata), tuple(layer.contrast_limits), placement_kwargs(layer))
        return self._run(work, f"Augment ({label})", lambda r: self._add_result(label, source, r))

    def _add_result(self, label: str, source: tuple, result: AugmentResult) -> None:
        """The augmented volume and its change, on the source grid, beside the source."""
        name, data, geometry, metadata, limits, placement = source
        header = metadata.get("header", {})
        vol = Volume(array=result.array, geometry=geometry, header=header, source=metadata.get("source", ""))
        aug_name, diff_name = f"{name} {label}", f"{name} {label} − original"
        diff = (result.array - np.asarray(data, dtype=np.float32)).astype(np.float32)
        span = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        for layer_name in (aug_name, diff_name):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        aug_data, aug_kwargs, _ = image_layer_data(vol, name=aug_name, contrast_limits=limits, **placement)
        aug_kwargs["metadata"]["freqseg_augment"] = result.info
        self.viewer.add_image(aug_data, **aug_kwargs)
        diff_data, diff_kwargs, _ = image_layer_data(
            Volume(array=diff, geometry=geometry, header=header),
            name=diff_name,
            colormap="bwr",
            contrast_limits=(-span, span),
            **placement,
        )
        self.viewer.add_image(diff_data, **diff_kwargs)
        if self.side_by_side.isChecked():
            self.viewer.canvas.grid.enabled = True
        details = ", ".join(f"{k} {v:.3g}" for k, v in result.info.items() if isinstance(v, float))
        self.status.setText(f"{aug_name}: {details}; largest change {float(np.abs(diff).max()):.4g}")

    def reliance(self) -> Task | None:
        """Per-band reliance of the chosen model on the image, drawn in the plot."""
        inputs = self._inputs()
        if inputs is None:
            return None
        layer, data, geometry = inputs
        ok, labels = self._labels_array(data.shape)
        if not ok:
            return None
        spec, seed, n_bands = self._model_spec(), self.seed.value(), self.bands.value()

        def work(progress: Any, cancelled: Any) -> tuple[str, RelianceCurve]:
            model = resolve_model(spec, seed)
            curve = volume_reliance(data, geometry, model, labels, n_bands=n_bands, progress=progress, cancelled=cancelled)
            return f"{layer.name} / {model.name}", curve

        return self._run(work, "Reliance", self._add_curve)

    def _add_curve(self, named: tuple[str, RelianceCurve]) -> None:
        self.curves = [c for c in self.curves if c[0] != named[0]][-(MAX_CURVES - 1) :] + [named]
        self.canvas.redraw(lambda ax: draw_reliance(ax, self.curves))
        name, curve = named
        top = int(np.argmax(curve.values))
        self.status.setText(
            f"{name}: relies most on {curve.edges[top]:.3g}–{curve.edges[top + 1]:.3g} {curve.unit} "
            f"({curve.metric.replace('_', ' ')} {curve.values[top]:.3g})"
        )
