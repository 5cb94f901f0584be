"""Does the viewer stay responsive while the Segment widget runs? Prints JSON.

A real napari viewer (needs a display: run under Xvfb) with the LA sample scan; a 10 ms QTimer
records when it fires while the widget segments the scan ("accurate": 50% overlap + flip TTA,
with an uncertainty map) and until the result layers are drawn. The longest gap between ticks is
how long the GUI froze (goal: < 100 ms). Gaps are reported for the computation (Run clicked until
the worker's last progress message) and for putting the results into the viewer (napari builds a
layer's controls and visuals in the GUI thread); as a reference, the same gap is measured for a
plain `viewer.add_labels` of the same array. An idle second before the run gives the baseline.

    xvfb-run -a python benchmarks/bench_ui.py --model benchmarks/out/la_quick_vnet.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QEventLoop, QTimer

from napari_freqseg._sample_data import sample_la
from napari_freqseg.models import ModelMeta, build_network, save_model
from napari_freqseg.widgets.segment import SegmentWidget

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "benchmarks" / "out" / "la_quick_vnet.safetensors"


class TickRecorder:
    """Times of a 10 ms QTimer's ticks."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def gaps_ms(self, start: float, end: float) -> np.ndarray:
        t = np.asarray([start] + [x for x in self.ticks if start <= x <= end] + [end])
        return np.diff(t) * 1000.0


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def until(condition: Callable[[], bool], poll_ms: int = 20) -> None:
    """Run the event loop until `condition()` holds."""
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: condition() and loop.quit())
    timer.start(poll_ms)
    loop.exec()
    timer.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--quality", default="accurate", choices=("fast", "accurate"))
    args = ap.parse_args()
    model = Path(args.model)
    if not model.is_file():  # random weights: the GUI cost is the same
        meta = ModelMeta(name="random", architecture="vnet", arch_args={"n_filters": 8, "normalization": "batch"},
                         classes=["background", "left atrium"], spacing=[1.25, 1.25, 1.25], patch_size=[32, 64, 64])  # fmt: skip
        model = save_model(Path(tempfile.mkdtemp()) / "random.safetensors", build_network(meta), meta)
    viewer = napari.Viewer(show=True)
    for data, kwargs, kind in sample_la():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.image_combo.setCurrentText("la image")
    widget.set_model_path(model)
    widget.quality_combo.setCurrentText(args.quality)
    widget.uncertainty_check.setChecked(True)
    recorder = TickRecorder()
    recorder.timer.start()
    wait(500)
    idle_start = time.perf_counter()
    wait(1000)
    run_start = time.perf_counter()
    widget.run_button.click()
    computed: list[float] = []  # when the worker's final progress message reached the GUI thread
    widget.task._bridge.progressed.connect(lambda d, t, m: d == t and computed.append(time.perf_counter()))
    until(lambda: widget.task is None and "la image uncertainty" in viewer.layers)
    wait(500)  # the new layers are drawn
    run_end = time.perf_counter()
    labels = viewer.layers["la image segmentation"].data
    ref_start = time.perf_counter()
    viewer.add_labels(labels.copy(), name="reference add_labels", scale=viewer.layers["la image"].scale)
    wait(500)
    ref_end = time.perf_counter()
    recorder.timer.stop()
    idle = recorder.gaps_ms(idle_start, run_start)
    computing = recorder.gaps_ms(run_start, computed[0])
    adding = recorder.gaps_ms(computed[0], run_end)
    reference = recorder.gaps_ms(ref_start, ref_end)
    result = {
        "benchmark": "bench_ui",
        "model": str(model.name),
        "quality": args.quality,
        "volume_zyx": list(labels.shape),
        "status": widget.status.text(),
        "compute_seconds": round(computed[0] - run_start, 2),
        "ticks_while_computing": int(computing.size),
        "max_gap_ms_while_computing": round(float(computing.max()), 1),
        "p99_gap_ms_while_computing": round(float(np.percentile(computing, 99)), 1),
        "median_gap_ms_while_computing": round(float(np.median(computing)), 1),
        "max_gap_ms_adding_result_layers": round(float(adding.max()), 1),
        "max_gap_ms_plain_napari_add_labels": round(float(reference.max()), 1),
        "max_gap_ms_idle": round(float(idle.max()), 1),
        "goal_max_gap_ms": 100,
    }
    viewer.close()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
