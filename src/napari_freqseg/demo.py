"""`make demo`: napari with every widget of this plugin docked, sample volumes and the sample cohort loaded."""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npe2 import PluginManifest

from ._sample_data import SAMPLE_DIR, sample_icbm152, sample_la

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-freqseg"
FIRST_TAB = "Segment"
MANIFEST = Path(__file__).parent / "napari.yaml"


def available_widgets() -> list[str]:
    """Display names of the manifest's widgets whose module is present, in manifest order."""
    manifest = PluginManifest.from_file(MANIFEST)
    python_names = {c.id: c.python_name for c in manifest.contributions.commands or []}
    names = []
    for widget in manifest.contributions.widgets or []:
        module = (python_names.get(widget.command) or "").split(":")[0]
        if module and importlib.util.find_spec(module) is not None:
            names.append(widget.display_name)
    return names


def build_demo(viewer: napari.viewer.Viewer) -> dict[str, object]:
    """Load the LA sample (shown) and the ICBM152 sample (hidden), dock every widget; returns the widgets.

    The Cohort widget starts reading the shipped sample cohort (three sources, three sites).
    """
    for data, kwargs, kind in sample_icbm152():
        getattr(viewer, f"add_{kind}")(data, **{**kwargs, "visible": False})
    for data, kwargs, kind in sample_la():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers.selection.active = viewer.layers["la image"]  # every widget's layer choice starts here
    widgets: dict[str, object] = {}
    docks: dict[str, Any] = {}
    for i, name in enumerate(available_widgets()):
        docks[name], widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=i > 0)
        widgets[name] = widget
    if FIRST_TAB in docks:
        docks[FIRST_TAB].raise_()  # open on segmenting the scan, the clinician's first step
    cohort = widgets.get("Cohort")
    if cohort is not None:
        manifest = SAMPLE_DIR / "cohort.csv"
        inside = Path.cwd() in manifest.parents
        cohort.load(os.path.relpath(manifest) if inside else str(manifest))
    focus_on(viewer, "la image")
    return widgets


def fit_to_screen(viewer: napari.viewer.Viewer, width: int = 1500, height: int = 950) -> None:
    """Size the window to `width` × `height`, or to the screen's free area when that is smaller
    (tabs, slider and status bar stay on screen)."""
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        width, height = min(width, free.width()), min(height, free.height() - 40)  # 40: the title bar
    viewer.window.resize(width, height)


def focus_on(viewer: napari.viewer.Viewer, name: str) -> None:
    """Fit the view to one layer and put the slider in its middle slice (the other sample lies elsewhere)."""
    layer = viewer.layers[name]
    lo, hi = layer.extent.world
    viewer.dims.set_point(0, float(lo[0] + hi[0]) / 2)
    viewer.reset_view(layers=[layer])


def wait_for_tasks(widgets: dict[str, object], timeout: float = 120.0) -> None:
    """Process GUI events until no widget has a background task running (for screenshots)."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end and any(getattr(w, "_task", None) is not None for w in widgets.values()):
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_freqseg.demo", description=__doc__)
    parser.add_argument("--screenshot", metavar="PNG", help="save a picture of the window and quit")
    args = parser.parse_args(argv)
    import napari

    viewer = napari.Viewer(title="napari-freqseg demo")
    fit_to_screen(viewer)
    widgets = build_demo(viewer)
    if args.screenshot:
        wait_for_tasks(widgets)
        focus_on(viewer, "la image")  # the window has its final size now
        viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
