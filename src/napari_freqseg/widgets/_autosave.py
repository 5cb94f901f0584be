"""Autosave of a correction session: on request (every mark) and every few seconds, in a worker.

The GUI thread only starts the worker; comparing the labels with the last save and writing them
(`correction.save_session`: atomic, crash-safe) happen in the worker thread. Unchanged labels are
not rewritten; one save runs at a time and a request during a save is done right after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from ..correction import CorrectionRecord, save_session
from ..io.geometry import Geometry

INTERVAL_MS = 5000


@dataclass
class Target:
    """What to save: the live labels array (read in the worker, never modified) and its record."""

    scan: Path
    labels: np.ndarray
    record: CorrectionRecord
    geometry: Geometry | None
    name: str


def _save(target: Target, record: dict[str, Any], last_labels: np.ndarray | None, last_record: dict | None):
    same_labels = last_labels is not None and np.array_equal(target.labels, last_labels)
    if same_labels and record == last_record:
        return None
    snapshot = None if same_labels else np.array(target.labels, copy=True)
    notes: list[str] = []
    folder = save_session(
        target.scan,
        snapshot,
        CorrectionRecord.from_dict(record),
        target.geometry,
        target.name,
        current_labels=target.labels,
        on_damaged=notes.append,
    )
    return snapshot, record, folder, notes


class Autosaver(QObject):
    """Saves `target` when asked and every `interval_ms`; `saved(folder)` / `failed(message)` /
    `damaged(message)`."""

    saved = Signal(str)
    failed = Signal(str)
    damaged = Signal(str)  # an earlier session was damaged and moved aside (said once, saving goes on)

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.target: Target | None = None
        self.last_saved_at: float | None = None
        self._last_labels: np.ndarray | None = None
        self._last_record: dict | None = None
        self._worker = None
        self._again = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.save)

    def set_interval(self, ms: int) -> None:
        self._timer.setInterval(ms)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def attach(self, target: Target | None, saved_labels: np.ndarray | None = None) -> None:
        """Save `target` from now on (None: stop).

        The last save stays the reference while the scan and its labels array stay the same; for
        another scan, or another labels layer of the same scan (the corrected one deleted by
        mistake, the combo falling on a prediction), it is `saved_labels` (labels already in its
        session, after a restore) or the labels as they are now: nothing is written until someone
        edits them or marks a slice.
        """
        same_scan = (
            target is not None
            and self.target is not None
            and target.scan == self.target.scan
            and target.labels is self.target.labels
        )
        if not same_scan or saved_labels is not None:
            # The labels as they are now count as saved: a session nobody edits is never written.
            reference = (
                saved_labels if saved_labels is not None else (np.array(target.labels, copy=True) if target is not None else None)
            )
            self._last_labels = reference
            self._last_record = target.record.to_dict() if target is not None else None
        self.target = target
        if target is None:
            self._timer.stop()
        else:
            self._timer.start()

    def save(self) -> None:
        """Save now if anything changed (in a worker); when a save is running, once more after it."""
        if self.target is None:
            return
        if self._worker is not None:
            self._again = True
            return
        self._again = False
        target = self.target
        worker = create_worker(_save, target, target.record.to_dict(), self._last_labels, self._last_record)
        worker.returned.connect(lambda result: self._returned(target, result))
        worker.errored.connect(lambda exc: self.failed.emit(str(exc)))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _returned(self, target: Target, result: tuple | None) -> None:
        if result is None or target is not self.target:
            return
        snapshot, record, folder, notes = result
        if snapshot is not None:
            self._last_labels = snapshot
        self._last_record = record
        self.last_saved_at = time.time()
        self.saved.emit(str(folder))
        for note in notes:
            self.damaged.emit(note)

    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self.save()

    def stop(self) -> None:
        self._timer.stop()
        self.target = None
