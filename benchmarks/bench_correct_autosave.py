"""GUI responsiveness of the Correct widget's autosave on a full-size LA-like volume.

Opens a 88×576×576 scan (the size of an LA-challenge volume) with a labels layer in a real viewer,
paints a few hundred voxels every 200 ms, and measures the gaps between ticks of a 10 ms QTimer in
the GUI thread: first with autosave idle, then saving every 300 ms (16 times more often than the
widget's 5 s). Prints JSON. Needs a display (run under xvfb-run on a headless machine).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import read_volume, write_volume
from napari_freqseg.layers import image_layer_data, labels_layer_data
from napari_freqseg.widgets.correct import CorrectWidget

SHAPE = (88, 576, 576)
PHASE_S = 6.0


def _scan(folder: Path) -> tuple[Path, np.ndarray, Geometry]:
    g = Geometry(size=SHAPE[::-1], spacing=(0.625,) * 3, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    lab = (((zz - 44) / 30) ** 2 + ((yy - 288) / 120) ** 2 + ((xx - 288) / 100) ** 2 <= 1).astype(np.uint8)
    img = (lab * 80 + np.random.default_rng(0).normal(100, 10, SHAPE)).astype(np.float32)
    return write_volume(img, g, folder / "la_sized.nii.gz"), lab, g


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    scan, lab, g = _scan(folder)
    viewer = napari.Viewer(show=True)
    data, kwargs, _ = image_layer_data(read_volume(scan))
    viewer.add_image(data, **kwargs)
    data, kwargs, _ = labels_layer_data(lab, g, "seg")
    layer = viewer.add_labels(data, **kwargs)
    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()
    saves: list[float] = []
    widget.session.autosaver.saved.connect(lambda _: saves.append(time.perf_counter()))
    painted = [0]

    def paint() -> None:
        painted[0] += 1
        n = painted[0]
        layer.data_setitem((np.full(400, 10 + n % 60), np.arange(400) + 50, np.full(400, 300)), n % 2 + 1)

    def phase(interval_ms: int) -> dict[str, float]:
        widget.session.autosaver.set_interval(interval_ms)
        gaps: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        ticker, painter = QTimer(), QTimer()
        ticker.setInterval(10)
        ticker.timeout.connect(tick)
        painter.setInterval(200)
        painter.timeout.connect(paint)
        n_saves = len(saves)
        ticker.start()
        painter.start()
        end = time.perf_counter() + PHASE_S
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)
        ticker.stop()
        painter.stop()
        g_ms = np.array(gaps[3:]) * 1000
        return {
            "max_gap_ms": round(float(g_ms.max()), 1),
            "p95_gap_ms": round(float(np.percentile(g_ms, 95)), 1),
            "median_gap_ms": round(float(np.median(g_ms)), 1),
            "saves": len(saves) - n_saves,
        }

    widget.go_to(0, 44)
    for _ in range(20):
        app.processEvents()
    idle = phase(10**9)
    saving = phase(300)
    widget.session.autosaver.stop()
    viewer.close()
    print(
        json.dumps(
            {
                "volume_zyx": list(SHAPE),
                "phase_s": PHASE_S,
                "autosave_idle": idle,
                "autosave_every_300ms": saving,
                "max_gap_ratio": round(saving["max_gap_ms"] / idle["max_gap_ms"], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
