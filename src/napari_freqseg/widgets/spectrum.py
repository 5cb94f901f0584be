"""Spectrum dock widget: amplitude spectra of image layers (typically one per centre), side by side.

For each chosen image it adds the centred log-amplitude spectrum as a layer of the same shape and
voxel size, placed just beside the image along x (same z and y: slicing through the image slices
through its spectrum at the same index; index n//2 is zero frequency, one voxel is one frequency
step 1/(n·spacing) cycles/mm), the low-frequency box for the β slider as a Labels outline on it,
and the radial profiles in cycles/mm overlaid in the plot with the layer names in the legend.
The difference of two spectra compares them at the same physical frequencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget
from superqt import QLabeledDoubleSlider

from ..errors import CancelledError
from ..frequency.bands import box_edge_frequency, box_slices
from ..frequency.plots import draw_profiles
from ..frequency.spectrum import VolumeSpectrum, resample_centred, volume_spectrum
from ..layers import AXIS_LABELS
from ._frequency_ui import LayerChecklist, PlotCanvas, layer_volume
from ._layer_combo import not_volume
from ._model_combo import ModelCombo
from ._tasks import Task, TaskButtons

if TYPE_CHECKING:
    import napari

SPECTRUM_KEY = "freqseg_spectrum"
GAP = 0.1  # space between an image and its spectrum, as a fraction of the image's x extent


@dataclass
class _Shown:
    """A computed spectrum and where its layers sit."""

    spectrum: VolumeSpectrum
    scale: tuple[float, ...]
    translate: tuple[float, ...]


def spectrum_placement(scale: tuple[float, ...], translate: tuple[float, ...], shape: tuple[int, ...]) -> tuple[float, ...]:
    """Translate of a spectrum layer: the image's, shifted along x past the image's extent."""
    shifted = list(translate)
    shifted[-1] += shape[-1] * scale[-1] * (1 + GAP)
    return tuple(shifted)


def box_mask(shape: tuple[int, ...], beta: float) -> np.ndarray:
    """The low-frequency box on a centred spectrum, as a 0/1 label volume."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[box_slices(shape, beta)] = 1
    return mask


class SpectrumWidget(TaskButtons, QWidget):
    """Pick image layers, compute their spectra, compare centres."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.shown: dict[str, _Shown] = {}

        self.layers = LayerChecklist(napari_viewer, (Image,), exclude=lambda l: SPECTRUM_KEY in l.metadata or not_volume(l))
        self.bins = QSpinBox()
        self.bins.setRange(0, 512)
        self.bins.setSpecialValueText("auto")
        self.bins.setToolTip("radial shells of the profile (auto: one per frequency step)")
        self.beta = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.beta.setRange(0.005, 0.5)
        self.beta.setDecimals(3)
        self.beta.setSingleStep(0.005)
        self.beta.setValue(0.05)
        self.beta.setToolTip("half-width of the low-frequency box, as a fraction of each axis")
        self.beta.valueChanged.connect(self._update_boxes)
        self.compute_button = QPushButton("Compute spectra")
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.diff_a, self.diff_b = QComboBox(), QComboBox()
        self.diff_button = QPushButton("Add difference A − B")
        self.diff_button.clicked.connect(self.add_difference)
        self.style_model = ModelCombo(
            accept=lambda entry: entry.meta is not None and entry.meta.style is not None, choose_file=False
        )
        self.style_model.setToolTip("a model that carries its training data's style (freqseg models style)")
        self.style_button = QPushButton("Compare with the model's training data")
        self.style_button.setToolTip(
            "low-frequency amplitude of the model's input windows: each ticked scan against the mean over the model's training scans"
        )
        self.style_button.clicked.connect(self.compare_with_model)
        self.action_buttons = (self.compute_button, self.diff_button, self.style_button)
        self.canvas = PlotCanvas(napari_viewer, hint="Compute: the radial amplitude spectrum of each ticked image appears here")
        self.status = QLabel("Tick image layers (e.g. one per centre), then compute.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("images", self.layers)
        form.addRow("profile shells", self.bins)
        form.addRow("β (box)", self.beta)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        diff = QHBoxLayout()
        diff.addWidget(self.diff_a)
        diff.addWidget(QLabel("−"))
        diff.addWidget(self.diff_b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.canvas)
        layout.addLayout(diff)
        layout.addWidget(self.diff_button)
        styled = QHBoxLayout()
        styled.addWidget(self.style_model, 1)
        styled.addWidget(self.style_button)
        layout.addLayout(styled)
        layout.addWidget(self.status)
        self._refresh_choices()
        self._refresh_models()

    # -- computing -------------------------------------------------------------------------------
    def compute(self) -> Task | None:
        """Spectra of the ticked layers in a worker; layers and plot when done."""
        chosen = self.layers.checked()
        if not chosen:
            show_info("Spectrum: tick at least one image layer")
            return None
        jobs = []
        for layer in chosen:
            data, _ = layer_volume(layer)
            jobs.append((layer.name, data, tuple(layer.scale), tuple(layer.translate)))
        n_bins = self.bins.value() or None

        def work(progress: Any, cancelled: Any) -> list[tuple[str, _Shown]]:
            out = []
            for i, (name, data, scale, translate) in enumerate(jobs):
                if cancelled():
                    raise CancelledError("cancelled")
                progress(i, len(jobs), name)
                spec = volume_spectrum(data, scale, n_bins)
                out.append((name, _Shown(spec, scale, spectrum_placement(scale, translate, data.shape))))
            progress(len(jobs), len(jobs), "done")
            return out

        return self._run(work, "Spectrum", self._show)

    # -- results into layers -----------------------------------------------------------------------
    def _show(self, results: list[tuple[str, _Shown]]) -> None:
        for name, shown in results:
            self.shown[name] = shown
            log_amp = shown.spectrum.log_amplitude
            lo, hi = np.percentile(log_amp, (1, 99.95))
            steps = [1.0 / (n * s) for n, s in zip(log_amp.shape, shown.spectrum.spacing)]
            meta = {
                SPECTRUM_KEY: {"source": name, "cycles_per_mm_per_voxel": steps, "zero_index": [n // 2 for n in log_amp.shape]}
            }
            self._put_layer(
                f"{name} spectrum",
                log_amp,
                "image",
                scale=shown.scale,
                translate=shown.translate,
                colormap="magma",
                contrast_limits=(float(lo), float(hi)),
                metadata=meta,
            )
            box = self._put_layer(
                f"{name} β box",
                box_mask(log_amp.shape, self.beta.value()),
                "labels",
                scale=shown.scale,
                translate=shown.translate,
                opacity=0.9,
                metadata=meta,
            )
            box.contour = 1
        self._refresh_choices()
        self._redraw()
        self.status.setText(f"{len(self.shown)} spectra; zero frequency at the centre of each spectrum layer.")

    def _put_layer(self, name: str, data: np.ndarray, kind: str, **kwargs: Any) -> Any:
        """Replace the data of an existing layer of that name, or add it."""
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            for key in ("scale", "translate"):
                setattr(layer, key, kwargs[key])
            if "contrast_limits" in kwargs:
                layer.contrast_limits = kwargs["contrast_limits"]
            return layer
        add = self.viewer.add_image if kind == "image" else self.viewer.add_labels
        return add(data, name=name, units=("mm",) * data.ndim, axis_labels=AXIS_LABELS[-data.ndim :], **kwargs)

    def _update_boxes(self, *_: Any) -> None:
        beta = self.beta.value()
        for name, shown in self.shown.items():
            layer_name = f"{name} β box"
            if layer_name in self.viewer.layers:
                self.viewer.layers[layer_name].data = box_mask(shown.spectrum.log_amplitude.shape, beta)
        self._redraw()

    def _redraw(self) -> None:
        beta = self.beta.value()
        items = [(name, s.spectrum.profile) for name, s in self.shown.items()]
        edges = [box_edge_frequency(s.spectrum.log_amplitude.shape, s.spectrum.spacing, beta) for s in self.shown.values()]
        self.canvas.redraw(lambda ax: draw_profiles(ax, items, edges))

    def _refresh_choices(self) -> None:
        names = list(self.shown)
        for i, combo in enumerate((self.diff_a, self.diff_b)):
            current = combo.currentText()
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif len(names) > i:
                combo.setCurrentIndex(i)
        self.diff_button.setEnabled(len(names) >= 2 and self._task is None)

    # -- a scan against the model's training data -------------------------------------------------
    def _refresh_models(self) -> None:
        """Models that carry their training style (bundled and user folder)."""
        self.style_model.refresh()
        self.style_button.setEnabled(self.style_model.count() > 0 and self._task is None)

    def compare_with_model(self) -> Task | None:
        """Plot the ticked scans' low-frequency window amplitude, as the chosen model sees them,
        with the mean of the model's training scans (what `--harmonize spectrum` moves toward)."""
        from ..harmonize import TrainingStyle, scan_style, style_profile
        from ..io.volume import Volume
        from ..models.modelfile import read_meta

        chosen, path = self.layers.checked(), self.style_model.currentData()
        if not chosen or path is None:
            show_info("Spectrum: tick at least one image layer and choose a model that carries its style")
            return None
        meta = read_meta(path)
        jobs = [(layer.name, *layer_volume(layer)) for layer in chosen]
        spacing = list(reversed(meta.spacing)) if meta.spacing else None

        def work(progress: Any, cancelled: Any) -> list[tuple[str, Any]]:
            out = [(f"{meta.name}: training scans", style_profile(TrainingStyle.from_dict(meta.style), spacing))]
            for i, (name, data, geometry) in enumerate(jobs):
                if cancelled():
                    raise CancelledError("cancelled")
                progress(i, len(jobs), name)
                out.append((name, style_profile(scan_style(Volume(array=data, geometry=geometry), meta), spacing)))
            return out

        def show(profiles: list[tuple[str, Any]]) -> None:
            self.canvas.redraw(lambda ax: draw_profiles(ax, profiles))
            self.status.setText(
                f"Low-frequency window amplitude as {meta.name} sees each scan, against its training scans' mean."
            )

        return self._run(work, "Spectrum vs model", show)

    # -- difference of two centres -----------------------------------------------------------------
    def add_difference(self) -> Task | None:
        """log-amplitude A − B, with B taken at A's physical frequencies (0 where B has none)."""
        a_name, b_name = self.diff_a.currentText(), self.diff_b.currentText()
        if a_name not in self.shown or b_name not in self.shown or a_name == b_name:
            show_info("Spectrum: choose two different computed spectra")
            return None
        a, b = self.shown[a_name], self.shown[b_name]

        def work(progress: Any, cancelled: Any) -> tuple[str, np.ndarray, _Shown]:
            progress(0, 1, "resampling")
            b_on_a = resample_centred(
                b.spectrum.log_amplitude, b.spectrum.spacing, a.spectrum.log_amplitude.shape, a.spectrum.spacing
            )
            diff = a.spectrum.log_amplitude - b_on_a
            progress(1, 1, "done")
            return f"{a_name} − {b_name} spectrum", np.nan_to_num(diff, nan=0.0).astype(np.float32), a

        def done(result: tuple[str, np.ndarray, _Shown]) -> None:
            name, diff, where = result
            limit = float(np.percentile(np.abs(diff), 99.5)) or 1.0
            self._put_layer(
                name,
                diff,
                "image",
                scale=where.scale,
                translate=where.translate,
                colormap="bwr",
                contrast_limits=(-limit, limit),
                metadata={SPECTRUM_KEY: {"difference": [a_name, b_name]}},
            )
            self.status.setText(f"{name}: red where {a_name} has more amplitude (log10 ratio).")

        return self._run(work, "Spectrum difference", done)
