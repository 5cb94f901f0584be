"""Task: a job that returns after Cancel was pressed counts as cancelled, not done."""

from __future__ import annotations

import threading

from napari_freqseg.widgets._tasks import Task


def test_a_job_that_returns_after_cancel_is_reported_cancelled(qtbot) -> None:
    release = threading.Event()
    seen: list[str] = []

    def job(progress, cancelled) -> str:  # noqa: ANN001 - the core's callback signature
        release.wait(10)
        return "result"  # the last step ran to its end without looking at `cancelled`

    task = Task(job, "test", on_done=lambda r: seen.append(f"done {r}"), on_cancelled=lambda: seen.append("cancelled"))
    with qtbot.waitSignal(task.worker.finished, timeout=10000):
        task.start()
        task.cancel()
        release.set()
    qtbot.wait(50)
    assert seen == ["cancelled"]


def test_a_job_that_returns_normally_is_done(qtbot) -> None:
    seen: list[str] = []
    task = Task(lambda progress, cancelled: 7, "test", on_done=lambda r: seen.append(r), on_cancelled=lambda: seen.append(0))
    with qtbot.waitSignal(task.worker.finished, timeout=10000):
        task.start()
    qtbot.wait(50)
    assert seen == [7]
