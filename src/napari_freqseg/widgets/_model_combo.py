"""A combo box of models: bundled and user-folder models, files chosen here, and a file chooser.

The one model picker of the widgets (Segment, Correct's fine-tune panel, Augment, Spectrum).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from ..models.registry import MODEL_SUFFIX, ModelEntry, list_models

CHOOSE_FILE = "Choose a model file…"


class ModelCombo(QComboBox):
    """Pick a model; `value()` is the chosen model file's path as a string, or an extra entry's value.

    Entries: `extras` (label, value) first (e.g. a random network), then the registry's readable
    models that `accept` (bundled and user folder, the registry being the one resolver), then
    files chosen or set here (kept across refreshes), then the file chooser when `choose_file`.
    `model_changed` carries the new value (None when nothing is chosen).
    """

    model_changed = Signal(object)

    def __init__(
        self,
        extras: Sequence[tuple[str, str]] = (),
        accept: Callable[[ModelEntry], bool] | None = None,
        choose_file: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._extras = list(extras)
        self._accept = accept or (lambda entry: True)
        self._choose_file = choose_file
        self._files: list[str] = []
        self._last = -1
        self.currentIndexChanged.connect(self._changed)
        self.activated.connect(self._activated)
        self.refresh()

    # ---- contents ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild from the registry, keeping the current choice when it is still there."""
        current = self.value()
        self.blockSignals(True)
        self.clear()
        for label, value in self._extras:
            self.addItem(label, value)
        listed: set[str] = set()
        for entry in list_models():
            if not entry.error and self._accept(entry):
                path = str(entry.path.resolve())
                listed.add(path)
                self.addItem(f"{entry.name} ({entry.source})", path)
                self.setItemData(self.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        for path in self._files:
            if path not in listed:
                self._add_file_item(path, self.count())
        if self._choose_file:
            self.addItem(CHOOSE_FILE, None)
        index = self.findData(current) if current is not None else -1
        self.setCurrentIndex(index if index >= 0 else 0)
        self.blockSignals(False)
        self._last = self.currentIndex()
        if self.value() != current:
            self.model_changed.emit(self.value())

    def _add_file_item(self, path: str, index: int) -> None:
        self.insertItem(index, f"{Path(path).stem} (file)", path)
        self.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)

    def value_at(self, index: int) -> str | None:
        data = self.itemData(index) if 0 <= index < self.count() else None
        return str(data) if data is not None else None

    def value(self) -> str | None:
        """The chosen model file (resolved path) or extra value; None when nothing is chosen."""
        return self.value_at(self.currentIndex())

    def model_path(self) -> Path | None:
        """The chosen model file, or None (nothing chosen, or an extra entry that is no file)."""
        value = self.value()
        extra_values = {v for _, v in self._extras}
        return Path(value) if value is not None and value not in extra_values else None

    def set_model_path(self, path: str | Path) -> None:
        """Choose a model file, adding it to the list when it is not there."""
        resolved = str(Path(path).resolve())
        index = self.findData(resolved)
        if index < 0:
            self._files.append(resolved)
            index = self.count() - 1 if self._choose_file else self.count()
            self._add_file_item(resolved, index)
        self.setCurrentIndex(index)

    def set_value(self, value: str) -> None:
        """Choose an extra entry by its value (e.g. back to the random network)."""
        index = self.findData(value)
        if index >= 0:
            self.setCurrentIndex(index)

    # ---- events -----------------------------------------------------------------------------
    def _changed(self, index: int) -> None:
        if self.value_at(index) is not None:
            self._last = index
        self.model_changed.emit(self.value())

    def _activated(self, index: int) -> None:
        if not self._choose_file or index != self.count() - 1:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model file", str(Path.home()), f"Model files (*{MODEL_SUFFIX})")
        if path:
            self.set_model_path(path)
        else:
            self.setCurrentIndex(self._last if 0 <= self._last < self.count() - 1 else index)
