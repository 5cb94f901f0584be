"""Run a core function in a napari worker thread with progress in the activity panel and Cancel.

Core functions take `progress(done, total, message)` and `cancelled() -> bool` callbacks (no Qt).
Here they run in a `napari.qt.threading` worker; progress crosses to the GUI thread through a Qt
signal (queued connection) and drives a `napari.utils.progress` bar; Cancel sets a flag that the
core checks between steps (one window batch, one iteration) and answers with CancelledError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..errors import CancelledError, FreqsegError


class _Bridge(QObject):
    progressed = Signal(int, int, object)  # object: a message keeps its structured values (StepMessage)


class Task:
    """One background job: `fn(progress=..., cancelled=...)` runs in a worker thread.

    `on_done(result)` and `on_error(exc)` run in the GUI thread. `cancel()` asks the job to stop at
    its next step; `on_done` is then not called and `on_cancelled()` is.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        label: str,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.label = label
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._pbar: napari_progress | None = None
        self._on_progress = on_progress
        self._bridge.progressed.connect(self._show_progress)

        def work() -> Any:
            return fn(progress=self._bridge.progressed.emit, cancelled=self._cancel.is_set)

        # errors are reported by _errored below; without _ignore_errors the worker would also re-raise
        # them in the event loop (a second, traceback-carrying report for a one-line user error)
        self.worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(lambda result: self._returned(result, on_done, on_cancelled))
        self.worker.errored.connect(lambda exc: self._errored(exc, on_error, on_cancelled))
        self.worker.finished.connect(self._close_bar)
        if on_finished is not None:
            self.worker.finished.connect(on_finished)

    def start(self) -> Task:
        self._pbar = napari_progress(total=0, desc=self.label)
        self.worker.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _show_progress(self, done: int, total: int, message: str) -> None:
        if self._on_progress is not None:  # first: the bar below may process the later `returned` event
            try:
                self._on_progress(done, total, message)
            except RuntimeError:  # the widget was closed while the job ran: its labels are gone
                self._on_progress = None
        bar = self._pbar  # updating it may process events, and with them `finished` (which drops it)
        if bar is not None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.set_description(f"{self.label}: {message}" if message else self.label)
            bar.refresh()

    def _returned(self, result: Any, on_done: Callable[[Any], None] | None, on_cancelled: Callable[[], None] | None) -> None:
        """The job finished; if Cancel was pressed meanwhile (during its last step), it counts as cancelled."""
        if self._cancel.is_set():
            self._errored(CancelledError("cancelled"), None, on_cancelled)
        elif on_done is not None:
            on_done(result)

    def _errored(
        self,
        exc: BaseException,
        on_error: Callable[[BaseException], None] | None,
        on_cancelled: Callable[[], None] | None,
    ) -> None:
        if isinstance(exc, CancelledError):
            show_info(f"{self.label}: cancelled")
            if on_cancelled is not None:
                on_cancelled()
            return
        message = str(exc) if isinstance(exc, FreqsegError) else f"{type(exc).__name__}: {exc}"
        show_error(f"{self.label}: {message}")
        if on_error is not None:
            on_error(exc)

    def _close_bar(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


class TaskButtons:
    """Mixin for a dock widget that runs one `Task` at a time: its `action_buttons` are disabled and
    its `cancel_button` enabled while the task runs. Subclasses set both in `__init__`."""

    _task: Task | None = None
    action_buttons: tuple[Any, ...] = ()
    cancel_button: Any

    def _run(self, work: Callable[..., Any], label: str, on_done: Callable[[Any], None]) -> Task:
        for b in self.action_buttons:
            b.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._task = Task(work, label, on_done=on_done, on_finished=self._finished)
        return self._task.start()

    def cancel(self) -> None:
        """Ask the running task to stop at its next step."""
        if self._task is not None:
            self._task.cancel()

    def _finished(self) -> None:
        self._task = None
        for b in self.action_buttons:
            b.setEnabled(True)
        self.cancel_button.setEnabled(False)
