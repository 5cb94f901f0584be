"""The demo window (what `make demo` opens), rendered under Xvfb: widgets docked, volumes drawn."""

from __future__ import annotations

import numpy as np

from napari_freqseg.demo import available_widgets, build_demo, main


def distinct_colours(rgb: np.ndarray) -> int:
    return len(np.unique(rgb.reshape(-1, rgb.shape[-1]), axis=0))


def test_available_widgets_lists_the_cohort_widget():
    assert "Cohort" in available_widgets()


def test_demo_renders_sample_volumes_and_docks_widgets(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widgets = build_demo(viewer)
    assert list(widgets) == available_widgets()
    names = [layer.name for layer in viewer.layers]
    assert names[:4] == ["icbm152 image", "icbm152 truth", "la image", "la truth"]
    # Every widget starts on the LA scan, and the Segment tab is the one shown.
    assert widgets["Segment"].image_combo.currentText() == "la image"
    assert widgets["Augment"].image.layer() is viewer.layers["la image"]
    assert widgets["Correct"].labels_combo.layer() is viewer.layers["la truth"]
    assert all(n.startswith("la truth") for n in names[4:])  # widget overlays (e.g. Correct's boundary)
    assert not viewer.layers["icbm152 image"].visible and viewer.layers["la image"].visible
    cohort = widgets["Cohort"]
    qtbot.waitUntil(lambda: cohort._task is None and cohort.table.rowCount() == 3, timeout=60000)

    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    assert canvas.std() > 20, "canvas looks blank"
    assert distinct_colours(canvas) > 100  # grey MRI plus the coloured atrium label
    reddish = (canvas[..., 0].astype(int) - canvas[..., 2].astype(int)) > 40
    assert reddish.mean() > 0.01, "the LA label overlay is not drawn"
    window = viewer.screenshot(canvas_only=False, flash=False)[..., :3]
    assert window.shape[0] > canvas.shape[0] and distinct_colours(window) > distinct_colours(canvas)


def test_main_saves_a_screenshot_and_quits(tmp_path, monkeypatch, qtbot):
    """`python -m napari_freqseg.demo --screenshot PNG`: how docs/images/demo.png is made."""
    import napari
    from skimage.io import imread

    made = []
    monkeypatch.setattr(napari, "Viewer", lambda **kw: made.append(napari.viewer.Viewer(show=True, **kw)) or made[-1])
    assert main(["--screenshot", str(tmp_path / "demo.png")]) == 0
    picture = imread(tmp_path / "demo.png")[..., :3]
    assert picture.shape[1] >= 1000 and picture.std() > 20
    assert picture.shape[0] <= 1000  # the whole window fits a 1000-pixel-high screen
