"""Small Qt pieces shared by the Spectrum and Augment widgets: layer pickers kept in step with the
viewer, and a matplotlib canvas styled like the napari theme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Layer
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QListWidget, QListWidgetItem, QSizePolicy

from ..io.geometry import Geometry
from ..layers import full_resolution, geometry_from_layer


def _watch(viewer: Any, refresh: Callable[..., None]) -> None:
    """Call `refresh` when layers are added, removed, reordered or renamed."""
    viewer.layers.events.inserted.connect(lambda e: (e.value.events.name.connect(refresh), refresh()))
    viewer.layers.events.removed.connect(refresh)
    viewer.layers.events.moved.connect(refresh)
    for layer in viewer.layers:
        layer.events.name.connect(refresh)


class LayerChecklist(QListWidget):
    """Several layers of some types, ticked in a list that follows the layer list."""

    def __init__(self, viewer: Any, types: tuple[type[Layer], ...], exclude: Callable[[Layer], bool] | None = None) -> None:
        super().__init__()
        self.viewer, self.types = viewer, types
        self.exclude = exclude or (lambda layer: False)
        self.setMaximumHeight(110)
        _watch(viewer, self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        ticked = set(self.checked_names())
        self.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, self.types) and not self.exclude(layer):
                item = QListWidgetItem(layer.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if layer.name in ticked else Qt.CheckState.Unchecked)
                self.addItem(item)

    def checked_names(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count()) if self.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, names: list[str]) -> None:
        for i in range(self.count()):
            item = self.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    def checked(self) -> list[Layer]:
        return [self.viewer.layers[n] for n in self.checked_names() if n in self.viewer.layers]


class PlotCanvas(FigureCanvasQTAgg):
    """A one-axes matplotlib figure in the dock, in the viewer's theme colours."""

    def __init__(self, viewer: Any, height: float = 2.8, hint: str = "") -> None:
        self.figure = Figure(figsize=(4.0, height), dpi=90)
        super().__init__(self.figure)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(int(height * 70))
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.viewer = viewer
        self._last: Callable[[Axes], None] | None = None
        self._set_theme()
        self.show_hint(hint)
        viewer.events.theme.connect(self._theme_changed)

    def _set_theme(self) -> None:
        theme = get_theme(self.viewer.theme)
        self.text, self.face = theme.text.as_hex(), theme.canvas.as_hex()

    def _theme_changed(self, _event: Any = None) -> None:
        self._set_theme()
        if self._last is not None:
            self.redraw(self._last)
        else:
            self.show_hint(self._hint)

    def show_hint(self, text: str) -> None:
        """No plot yet: the theme's background and a line saying what will appear here."""
        self._hint, self._last = text, None
        self.axes.clear()
        self.axes.set_axis_off()
        self.figure.set_facecolor(self.face)
        if text:
            self.axes.text(
                0.5,
                0.5,
                text,
                ha="center",
                va="center",
                wrap=True,
                color=self.text,
                fontsize=8,
                alpha=0.7,
                transform=self.axes.transAxes,
            )
        self.draw_idle()

    def redraw(self, draw: Callable[[Axes], None]) -> None:
        self._last = draw
        self.axes.clear()
        self.axes.set_axis_on()
        draw(self.axes)
        self.figure.set_facecolor(self.face)
        ax = self.axes
        ax.set_facecolor(self.face)
        ax.tick_params(colors=self.text, labelsize=7)
        for label in (ax.xaxis.label, ax.yaxis.label):
            label.set_color(self.text)
            label.set_fontsize(8)
        for spine in ax.spines.values():
            spine.set_color(self.text)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(self.face)
            for entry in legend.get_texts():
                entry.set_color(self.text)
                entry.set_fontsize(7)
        self.figure.tight_layout()
        self.draw_idle()


def layer_volume(layer: Layer) -> tuple[np.ndarray, Geometry]:
    """A 3D layer's array and the grid it lives on (stored source geometry, else scale/translate)."""
    data = np.asarray(full_resolution(layer.data, layer.multiscale))
    if data.ndim != 3:
        from ..errors import VolumeReadError

        raise VolumeReadError(f"{layer.name}: a 3D volume is needed (this layer is {data.ndim}D)")
    return data, geometry_from_layer(data.shape, layer.metadata, layer.scale, layer.translate)
