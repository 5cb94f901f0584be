"""The Correct widget is contributed through the plugin manifest and builds from it."""

from __future__ import annotations

import importlib
from pathlib import Path

from npe2 import PluginManifest

import napari_freqseg


def test_manifest_contributes_the_correct_widget():
    manifest = PluginManifest.from_file(Path(napari_freqseg.__file__).parent / "napari.yaml")
    commands = {c.id: c for c in manifest.contributions.commands}
    widget = [w for w in manifest.contributions.widgets if w.display_name == "Correct"]
    assert len(widget) == 1
    module, _, attr = commands[widget[0].command].python_name.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert cls.__name__ == "CorrectWidget"


def test_widget_opens_from_the_plugin_menu_and_works_through_its_viewer_proxy(make_napari_viewer):
    import numpy as np

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-freqseg", "Correct")
    assert type(widget).__name__ == "CorrectWidget"
    viewer.add_image(np.zeros((6, 7, 8), np.float32), name="img")
    labels = viewer.add_labels(np.zeros((6, 7, 8), np.uint8), name="lab")
    assert widget.labels_layer.name == "lab" and widget.image_layer.name == "img"
    widget.go_to(0, 4)
    widget.mark_current()
    assert widget.record.indices("z") == [4] and viewer.dims.current_step[0] == 4
    assert labels.data.shape == (6, 7, 8)
