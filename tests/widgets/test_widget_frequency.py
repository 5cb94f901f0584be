"""Spectrum and Augment widgets in a real viewer (under Xvfb): the layers and plots they add."""

from __future__ import annotations

import numpy as np
import pytest

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import Volume
from napari_freqseg.layers import GEOMETRY_KEY, image_layer_data
from napari_freqseg.widgets.augment import AugmentWidget
from napari_freqseg.widgets.spectrum import SpectrumWidget

TIMEOUT = 120_000


def _volume(
    shape_zyx: tuple[int, int, int],
    spacing_xyz: tuple[float, float, float],
    level: float,
    seed: int,
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Volume:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape_zyx], indexing="ij")
    array = (level * (1 + (zz**2 + yy**2 + xx**2 < 0.5)) + 3 * rng.standard_normal(shape_zyx)).astype(np.float32)
    geometry = Geometry(size=shape_zyx[::-1], spacing=spacing_xyz, origin=(1.0, 2.0, 3.0), direction=direction)
    return Volume(array=array, geometry=geometry, source=f"/data/site{seed}.nii.gz")


@pytest.fixture
def two_centres(make_napari_viewer, oblique_geometry: Geometry):
    viewer = make_napari_viewer()
    a = _volume((24, 32, 40), oblique_geometry.spacing, 100.0, 1, oblique_geometry.direction)
    b = _volume((20, 18, 16), (1.2, 1.2, 1.5), 40.0, 2)
    for vol, name in ((a, "centre A"), (b, "centre B")):
        data, kwargs, _ = image_layer_data(vol, name=name)
        viewer.add_image(data, **kwargs)
    return viewer, a, b


def test_spectrum_widget_adds_spectra_boxes_profiles_and_difference(two_centres, qtbot) -> None:
    viewer, a, b = two_centres
    widget = SpectrumWidget(viewer)
    assert widget.layers.count() == 2
    widget.layers.set_checked(["centre A", "centre B"])
    widget.compute()
    qtbot.waitUntil(lambda: widget._task is None and "centre B spectrum" in viewer.layers, timeout=TIMEOUT)
    for name, vol in (("centre A", a), ("centre B", b)):
        spec, box, image = viewer.layers[f"{name} spectrum"], viewer.layers[f"{name} β box"], viewer.layers[name]
        assert spec.data.shape == vol.array.shape
        np.testing.assert_allclose(spec.scale, image.scale)
        np.testing.assert_allclose(spec.translate[:2], image.translate[:2])  # same z, y slicing
        assert spec.translate[2] > image.translate[2] + vol.array.shape[2] * image.scale[2]  # beside, along x
        centre = tuple(n // 2 for n in vol.array.shape)
        assert np.unravel_index(np.argmax(spec.data), spec.data.shape) == centre  # zero frequency
        assert box.data[centre] == 1 and box.data[0, 0, 0] == 0
        np.testing.assert_allclose(box.translate, spec.translate)
    assert widget.layers.count() == 2  # spectra are not offered as inputs
    ax = widget.canvas.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["centre A", "centre B"]
    assert len(ax.get_lines()) == 4  # two profiles and their box edges
    small = int(viewer.layers["centre A β box"].data.sum())
    widget.beta.setValue(0.2)
    assert int(viewer.layers["centre A β box"].data.sum()) > small

    widget.diff_a.setCurrentText("centre A")
    widget.diff_b.setCurrentText("centre B")
    widget.add_difference()
    qtbot.waitUntil(lambda: "centre A − centre B spectrum" in viewer.layers, timeout=TIMEOUT)
    diff = viewer.layers["centre A − centre B spectrum"]
    assert diff.data.shape == a.array.shape and np.isfinite(diff.data).all()
    assert diff.data[tuple(n // 2 for n in a.array.shape)] != 0


def test_augment_widget_adds_the_volume_and_its_change_on_the_source_grid(two_centres, qtbot) -> None:
    viewer, a, _ = two_centres
    widget = AugmentWidget(viewer)
    widget.image.setCurrentText("centre A")
    widget.method.setCurrentText("FDA")
    widget.reference.setCurrentText("centre B")
    assert widget.reference.isVisible() or not widget.isVisible()
    assert widget.beta.value() == pytest.approx(0.01)
    widget.augment()
    qtbot.waitUntil(lambda: "centre A FDA − original" in viewer.layers, timeout=TIMEOUT)
    aug, diff = viewer.layers["centre A FDA"], viewer.layers["centre A FDA − original"]
    assert aug.data.shape == a.array.shape and diff.data.shape == a.array.shape
    assert aug.metadata[GEOMETRY_KEY] == a.geometry.to_dict()
    np.testing.assert_allclose(aug.data - a.array, diff.data, atol=1e-3)
    assert aug.data.mean() < 0.7 * a.array.mean()  # the darker centre's style
    assert viewer.canvas.grid.enabled

    widget.method.setCurrentText("L-AAE")
    assert widget.beta.value() == pytest.approx(0.05) and widget._model_spec() == "random"
    widget.augment()
    qtbot.waitUntil(lambda: "centre A L-AAE" in viewer.layers and widget._task is None, timeout=TIMEOUT)
    assert viewer.layers["centre A L-AAE"].metadata["freqseg_augment"]["method"] == "laae"


def test_only_3d_volumes_are_offered_and_results_overlay_a_rotated_source(two_centres, qtbot) -> None:
    """2D, RGB and 4D layers are not offered (they raised out of the button); the augmented volume
    and its change get the source layer's rotate/affine, so they overlay it."""
    viewer, a, _ = two_centres
    viewer.add_image(np.zeros((8, 9), np.float32), name="slice")
    viewer.add_image(np.zeros((8, 9, 3), np.uint8), name="photo", rgb=True)
    viewer.add_image(np.zeros((2, 8, 9, 10), np.float32), name="dynamic")
    viewer.layers["centre A"].rotate = 20
    spectrum, augment = SpectrumWidget(viewer), AugmentWidget(viewer)
    offered = {"centre A", "centre B"}
    assert {spectrum.layers.item(i).text() for i in range(spectrum.layers.count())} == offered
    assert {augment.image.itemText(i) for i in range(augment.image.count())} == offered
    augment.image.setCurrentText("centre A")
    augment.reference.setCurrentText("centre B")
    augment.augment()
    qtbot.waitUntil(lambda: "centre A FDA − original" in viewer.layers, timeout=TIMEOUT)
    source = viewer.layers["centre A"]
    for name in ("centre A FDA", "centre A FDA − original"):
        np.testing.assert_allclose(viewer.layers[name].extent.world, source.extent.world)


def test_reliance_plots_a_curve_and_cancel_adds_nothing(two_centres, qtbot) -> None:
    viewer, _, _ = two_centres
    widget = AugmentWidget(viewer)
    widget.image.setCurrentText("centre B")
    widget.bands.setValue(3)
    widget.reliance()
    qtbot.waitUntil(lambda: widget._task is None and len(widget.curves) == 1, timeout=TIMEOUT)
    name, curve = widget.curves[0]
    assert name.startswith("centre B / random") and len(curve.values) == 3
    assert "relies most" in widget.status.text()
    assert len(widget.canvas.axes.patches) == 1  # one stairs curve

    n_layers = len(viewer.layers)
    widget.method.setCurrentText("F-ASE")
    widget.augment()
    widget.cancel()
    qtbot.waitUntil(lambda: widget._task is None, timeout=TIMEOUT)
    assert len(viewer.layers) == n_layers
    assert widget.augment_button.isEnabled()


def test_plots_follow_the_viewer_theme_and_hint_before_a_run(make_napari_viewer) -> None:
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    viewer = make_napari_viewer()
    widget = AugmentWidget(viewer)
    canvas = widget.canvas
    texts = [t.get_text() for t in canvas.axes.texts]
    assert texts and "Reliance" in texts[0] and not canvas.axes.axison  # a hint, not empty axes
    assert to_hex(canvas.figure.get_facecolor()) == to_hex(get_theme(viewer.theme).canvas.as_hex())
    viewer.theme = "light" if viewer.theme != "light" else "dark"
    assert to_hex(canvas.figure.get_facecolor()) == to_hex(get_theme(viewer.theme).canvas.as_hex())
    assert to_hex(canvas.axes.texts[0].get_color()) == to_hex(get_theme(viewer.theme).text.as_hex())


def test_spectrum_widget_compares_scans_with_a_models_training_style(two_centres, qtbot, tmp_path, monkeypatch) -> None:
    """The model's stored window amplitude and each ticked scan's, as radial profiles in one plot;
    the scan the style was taken from lies on the model's curve, the other centre off it."""
    import dataclasses

    from synthetic import ThresholdNet, threshold_meta

    from napari_freqseg.harmonize import StyleAccumulator
    from napari_freqseg.inference.predict import model_input
    from napari_freqseg.models import registry
    from napari_freqseg.models.modelfile import ARCHITECTURES, save_model

    viewer, a, _ = two_centres
    monkeypatch.setitem(ARCHITECTURES, "threshold", ThresholdNet)
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(registry.USER_DIR_ENV, str(tmp_path / "user"))
    meta = threshold_meta(name="styled", patch_size=[16, 16, 16], spacing=[1.0, 1.0, 1.0])
    acc = StyleAccumulator(meta.patch_size)
    acc.add(model_input(a, meta)[0])
    save_model(tmp_path / "user" / "styled.safetensors", ThresholdNet(), dataclasses.replace(meta, style=acc.result().to_dict()))
    save_model(tmp_path / "user" / "plain.safetensors", ThresholdNet(), dataclasses.replace(meta, name="plain"))
    widget = SpectrumWidget(viewer)
    assert [widget.style_model.itemText(i) for i in range(widget.style_model.count())] == [
        "styled (user)"
    ]  # only models with a style
    widget.layers.set_checked(["centre A", "centre B"])
    widget.compare_with_model()
    qtbot.waitUntil(lambda: widget._task is None, timeout=TIMEOUT)
    lines = widget.canvas.figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["styled: training scans", "centre A", "centre B"]
    model_curve, scan_a, scan_b = (np.asarray(line.get_ydata(), float) for line in lines)
    assert np.isfinite(model_curve).sum() >= 3
    near, far = np.nanmax(np.abs(scan_a - model_curve)), np.nanmax(np.abs(scan_b - model_curve))
    assert near < 0.1 and far > 2 * near  # the training scan on the model's curve, the other centre off it
