"""A combo box of the viewer's layers of some types, kept in step with the layer list."""

from __future__ import annotations

from collections.abc import Callable

from napari.layers import Layer
from napari.viewer import Viewer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QWidget


def not_volume(layer: Layer) -> bool:
    """True for a layer that is not one scalar 3D volume (2D, 4D, RGB): not offered as an input."""
    return layer.ndim != 3 or bool(getattr(layer, "rgb", False))


class LayerCombo(QComboBox):
    """Pick one layer of `types` (optionally none); `layer_changed` carries the layer or None.

    Without a current choice the viewer's active layer is chosen when it qualifies, else the
    newest layer for which `prefer` holds (else the newest). The one layer picker of the widgets.
    """

    layer_changed = Signal(object)

    def __init__(
        self,
        viewer: Viewer,
        types: tuple[type[Layer], ...],
        none_text: str | None = None,
        exclude: Callable[[Layer], bool] | None = None,
        prefer: Callable[[Layer], bool] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._types = types
        self._none_text = none_text
        self._exclude = exclude or (lambda layer: False)
        self._prefer = prefer or (lambda layer: True)
        self._layers: list[Layer | None] = []
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.currentIndexChanged.connect(lambda _: self.layer_changed.emit(self.layer()))
        self.refresh()

    def _on_inserted(self, event: object) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()

    def candidates(self) -> list[Layer]:
        return [l for l in self._viewer.layers if isinstance(l, self._types) and not self._exclude(l)]

    def layer(self) -> Layer | None:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Layer | None) -> None:
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))

    def refresh(self, *_: object) -> None:
        """Rebuild the list, keeping the current choice when it is still there."""
        current = self.layer()
        layers: list[Layer | None] = ([None] if self._none_text is not None else []) + self.candidates()
        self.blockSignals(True)
        self.clear()
        self._layers = layers
        self.addItems([self._none_text if l is None else l.name for l in layers])
        if current in layers:
            self.setCurrentIndex(layers.index(current))
        elif self._none_text is None and layers:
            active = self._viewer.layers.selection.active
            preferred = [i for i, l in enumerate(layers) if self._prefer(l)]
            if active in layers and self._prefer(active):
                self.setCurrentIndex(layers.index(active))
            else:
                self.setCurrentIndex((preferred or [len(layers) - 1])[-1])  # the newest (preferred) layer
        self.blockSignals(False)
        if self.layer() is not current:
            self.layer_changed.emit(self.layer())
