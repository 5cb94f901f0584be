"""The GUI part of bench_hitl.py: the human-in-the-loop round in a real viewer, with GUI stalls.

A 10 ms QTimer records when it fires; the longest gap between ticks is how long the GUI froze
(goal < 100 ms); garbage-collector runs are timed too (any thread's run stops the GUI thread). Stages: segment the LA sample with the Segment widget, correct the three most
uncertain axial slices from the sample's label and mark them in the Correct widget, fine-tune
(measured), re-segment (measured). Optional screenshots of each stage.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import napari
import numpy as np
from bench_ui import TickRecorder, until, wait

from napari_freqseg._sample_data import sample_la
from napari_freqseg.metrics import dice
from napari_freqseg.models.registry import USER_DIR_ENV, find_model
from napari_freqseg.widgets.correct import CorrectWidget
from napari_freqseg.widgets.segment import SegmentWidget


def _gaps(recorder: TickRecorder, start: float, end: float) -> dict[str, float]:
    """Longest, 99th percentile and median gap between ticks; when (s after start) the longest ended."""
    gaps = recorder.gaps_ms(start, end)
    ends = np.asarray([start] + [x for x in recorder.ticks if start <= x <= end] + [end])[1:]
    return {"max_gap_ms": round(float(gaps.max()), 1), "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
            "median_gap_ms": round(float(np.median(gaps)), 1), "seconds": round(end - start, 1),
            "max_gap_at_s": round(float(ends[int(gaps.argmax())] - start), 2)}  # fmt: skip


class GcTimer:
    """Durations of the garbage collector's runs (any thread's run stops every Python thread)."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int]] = []  # (start, end, generation)
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.runs.append((self._start, time.perf_counter(), info["generation"]))

    def longest_ms(self, start: float, end: float) -> dict[str, float]:
        runs = [(e - s, g) for s, e, g in self.runs if start <= s <= end]
        longest = max(runs, default=(0.0, -1))
        return {"longest_gc_ms": round(1000 * longest[0], 1), "its_generation": longest[1], "gc_runs": len(runs)}


def _shot(viewer: napari.Viewer, folder: Path | None, name: str) -> None:
    if folder is not None:
        wait(300)
        folder.mkdir(parents=True, exist_ok=True)
        viewer.window._qt_window.grab().save(str(folder / name))


def run_gui(model: str, seconds: float, screenshots: Path | None, k: int = 3) -> dict[str, Any]:
    """Stalls (ms) while fine-tuning and re-segmenting in the Correct widget; Dice of each stage.
    The rounds are saved in a temporary user models folder, not the person's own."""
    model_path = find_model(model)
    os.environ[USER_DIR_ENV] = tempfile.mkdtemp(prefix="freqseg-bench-models-")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    for data, kwargs, kind in sample_la():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    truth = viewer.layers["la truth"]
    truth.visible = False
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.image_combo.setCurrentText("la image")
    segment.set_model_path(model_path)
    segment.uncertainty_check.setChecked(True)
    segment.run_button.click()
    until(lambda: segment.task is None and "la image uncertainty" in viewer.layers)
    labels = viewer.layers["la image segmentation"]
    dice_segmented = dice(labels.data == 1, truth.data == 1)
    viewer.layers["la image uncertainty"].visible = False
    _shot(viewer, screenshots, "hitl_1_segment.png")

    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Correct", tabify=True)
    widget.labels_combo.set_layer(labels)
    widget.rank_combo.set_layer(viewer.layers["la image uncertainty"])
    for _ in range(k):  # the simulated person: the ground truth on the suggested slices (z, y, x in turn)
        index = widget.next_suggested()
        wait(300)  # the person looks at the slice before painting (and napari has shown it)
        plane = tuple(index if a == widget.axis else slice(None) for a in range(3))
        changed = list(np.nonzero(truth.data[plane] != labels.data[plane]))
        values = truth.data[plane][tuple(changed)]
        changed.insert(widget.axis, np.full(values.size, index))
        with labels.block_history():  # one stroke: one undo step, overlays redrawn after it
            labels.data_setitem(tuple(changed), values)
        widget.mark_current()
    corrected = widget.record.spec()
    shown = max(widget.record.indices("z"), key=lambda z: int(np.count_nonzero(labels.data[z])))
    widget.go_to(0, shown)  # the corrected slice that shows the most of the structure
    _shot(viewer, screenshots, "hitl_2_correct.png")

    panel = widget.finetune
    panel.set_model_path(model_path)
    panel.budget_combo.setCurrentText("seconds")
    panel.budget_spin.setValue(int(seconds))
    recorder = TickRecorder()
    collector = GcTimer()
    recorder.timer.start()
    wait(1000)
    idle_start = time.perf_counter()
    wait(1000)
    start = time.perf_counter()
    panel.run_button.click()
    until(lambda: panel.task is None)
    finetuned = time.perf_counter()
    _shot(viewer, screenshots, "hitl_3_finetune.png")
    before = labels.data.copy()
    reseg_start = time.perf_counter()
    panel.resegment_button.click()
    until(lambda: panel.task is None)
    wait(500)
    reseg_end = time.perf_counter()
    recorder.timer.stop()
    widget.go_to(0, int(np.argmax((labels.data != before).sum(axis=(1, 2)))))  # the slice that changed most
    _shot(viewer, screenshots, "hitl_4_resegment.png")
    result = {
        "benchmark": "bench_hitl --gui",
        "model": model_path.name,
        "new_model": panel.model_path().name if panel.model_path() else None,
        "volume_zyx": list(labels.data.shape),
        "corrected_slices": corrected,
        "finetune_budget_seconds": seconds,
        "iterations": len(panel.history),
        "idle": _gaps(recorder, idle_start, start),
        "finetuning": {**_gaps(recorder, start, finetuned), **collector.longest_ms(start, finetuned)},
        "finetuning_after_the_first_second": _gaps(recorder, start + 1.0, finetuned),
        "resegmenting": {**_gaps(recorder, reseg_start, reseg_end), **collector.longest_ms(reseg_start, reseg_end)},
        "dice_segmented": round(float(dice_segmented), 4),
        "dice_resegmented_with_corrections_kept": round(float(dice(labels.data == 1, truth.data == 1)), 4),
        "goal_max_gap_ms": 100,
        "status": panel.status.text(),
    }
    viewer.close()
    return result
