"""The Session group of the Correct widget: autosave of the labels and corrected-slice record of
the current scan, and the offer to restore (or discard) a saved session when its scan is opened.

An older session of a scan is never overwritten silently: autosave waits until the person has
restored or discarded it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from napari.layers import Image, Layer
from napari.utils.notifications import Notification, notification_manager, show_error, show_warning
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ..correction import discard_session, find_session, load_session
from ..errors import FreqsegError
from ..layers import geometry_from_layer, labels_layer_data
from ._autosave import Autosaver, Target

if TYPE_CHECKING:
    from .correct import CorrectWidget


def scan_path(layer: Layer | None) -> Path | None:
    """The file or DICOM folder an Image layer was read from, when it still exists."""
    if layer is None:
        return None
    source = layer.metadata.get("source") or layer.source.path
    if not source:
        return None
    p = Path(source)
    return p if p.exists() else None


class SessionPanel(QGroupBox):
    """Autosave status, Restore and Discard."""

    def __init__(self, owner: CorrectWidget) -> None:
        super().__init__("Session")
        self.owner = owner
        self.autosaver = Autosaver(self)
        self._live: set[Path] = set()  # scans whose session this widget writes (never "waiting" for it)
        self.autosaver.saved.connect(lambda folder: self._say(f"autosaved {time.strftime('%H:%M:%S')} to {Path(folder).name}"))
        self.autosaver.failed.connect(lambda msg: self._say(f"autosave failed: {msg}", error=True))
        self.autosaver.damaged.connect(self._damaged)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.restore_button = QPushButton("Restore saved session")
        self.discard_button = QPushButton("Discard it")
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        row = QHBoxLayout()
        row.addWidget(self.restore_button)
        row.addWidget(self.discard_button)
        layout.addLayout(row)
        self.restore_button.clicked.connect(self.restore)
        self.discard_button.clicked.connect(self.discard)

    def _damaged(self, message: str) -> None:
        """An earlier session was damaged and moved aside: one notification, and the status line."""
        show_warning(f"Correct: {message}")
        self._say(message, error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff6060" if error else "")

    def _offer(self, waiting: bool) -> None:
        self.restore_button.setEnabled(waiting)
        self.discard_button.setEnabled(waiting)

    def follow(self) -> None:
        """Autosave the owner's current labels and record for its image's scan, unless an older
        session of that scan waits to be restored or discarded."""
        labels, record, image = self.owner.labels_layer, self.owner.record, self.owner.image_layer
        scan = scan_path(image)
        if labels is None or scan is None or record is None:
            self.autosaver.attach(None)
            self._offer(False)
            self._say(f"autosave off: {'no image with a file' if scan is None else 'no labels layer'}")
            return
        grid = geometry_from_layer(image.data.shape, image.metadata, image.scale, image.translate)
        if not geometry_from_layer(labels.data.shape, labels.metadata, labels.scale, labels.translate).same_grid(grid):
            self.autosaver.attach(None)  # another scan's labels: never saved as this scan's session
            self._offer(False)
            self._say(f"autosave off: {labels.name} is not on {image.name}'s grid", error=True)
            return
        new_scan = self.autosaver.target is None or self.autosaver.target.scan != scan
        waiting = new_scan and scan not in self._live and find_session(scan) is not None
        self._offer(waiting)
        if waiting:
            self.autosaver.attach(None)
            self._say(f"{scan.name} has a saved session: restore it or discard it to autosave")
            return
        self.autosaver.attach(self._target(scan))
        self._live.add(scan)
        if new_scan:
            self._say(f"autosave to {scan.name}.freqseg every few seconds")

    def _target(self, scan: Path) -> Target:
        labels = self.owner.labels_layer
        geometry = geometry_from_layer(labels.data.shape, labels.metadata, labels.scale, labels.translate)
        return Target(scan=scan, labels=labels.data, record=self.owner.record, geometry=geometry, name=labels.name)

    def offer_restore(self, image: Image) -> None:
        """A notification with Restore / Discard when `image`'s scan has a saved session."""
        scan = scan_path(image)
        if scan is None or find_session(scan) is None:
            return

        def restore(_widget: object = None) -> None:  # napari passes the notification's widget
            if image not in self.owner.viewer.layers:  # closed meanwhile: nothing to restore onto
                return
            self.owner.image_combo.set_layer(image)
            self.restore()

        def discard(_widget: object = None) -> None:
            if self.autosaver.target is not None and self.autosaver.target.scan == scan:
                return  # the session is the live one now (restored from the widget): never deleted from here
            self._discard(scan)

        notification_manager.dispatch(
            Notification(
                f"{scan.name} has a saved correction session",
                "INFO",
                actions=[("Restore", restore), ("Discard", discard)],
            )
        )

    def restore(self) -> None:
        """Load the saved labels and corrected-slice record of the image's scan, on its grid."""
        image = self.owner.image_layer
        scan = scan_path(image)
        if scan is None:
            return
        try:
            state = load_session(scan)
        except FreqsegError as exc:
            show_error(f"Correct: {exc}")
            return
        grid = geometry_from_layer(image.data.shape, image.metadata, image.scale, image.translate)
        if state.geometry is not None and not state.geometry.same_grid(grid):
            show_error(f"Correct: the saved session of {scan.name} is on another grid than {image.name}")
            return
        layer = next(
            (
                l
                for l in self.owner.labels_combo.candidates()
                if l.name == state.labels_name and l.data.shape == state.labels.shape
            ),
            None,
        )
        if layer is None:
            data, kwargs, _ = labels_layer_data(state.labels, grid, state.labels_name, opacity=0.5)
            layer = self.owner.viewer.add_labels(data, **kwargs)
        else:
            layer.data = state.labels
            layer._reset_history()  # an undo must not bring back what was there before the restore
        self.owner.labels_combo.set_layer(layer)
        self.owner.use_record(state.record)
        self.autosaver.attach(self._target(scan), saved_labels=state.labels.copy())
        self._live.add(scan)
        self._offer(False)
        self._say(f"restored the session saved at {time.strftime('%H:%M:%S', time.localtime(state.saved_at))}; autosave on")

    def discard(self) -> None:
        scan = scan_path(self.owner.image_layer)
        if scan is not None:
            self._discard(scan)

    def _discard(self, scan: Path) -> None:
        discard_session(scan)
        self.follow()
