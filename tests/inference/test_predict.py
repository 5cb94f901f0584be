"""predict_volume: exact labels on the source grid, resampling, TTA, uncertainty, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import ThresholdNet, make_blob_volume, threshold_meta, tiny_vnet_meta

from napari_freqseg.errors import CancelledError, ModelError, ResourceError, VolumeReadError
from napari_freqseg.harmonize import StyleAccumulator
from napari_freqseg.inference import estimate_memory, model_input, predict_volume
from napari_freqseg.inference.fast import fold_batchnorm, inference_copy
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.resample import model_grid
from napari_freqseg.io.volume import Volume
from napari_freqseg.models.modelfile import build_network
from napari_freqseg.models.preprocess import Normalization

pytestmark = pytest.mark.usefixtures("single_thread")


def _volume(geometry: Geometry | None = None, seed: int = 0) -> tuple[Volume, np.ndarray]:
    shape = geometry.shape_zyx if geometry else (24, 32, 40)
    image, label = make_blob_volume(shape, seed)
    g = geometry or Geometry(
        size=shape[::-1], spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    return Volume(array=image, geometry=g), label


def _expected(volume: Volume, threshold: float = 2.0) -> np.ndarray:
    return (Normalization()(volume.array) > threshold).astype(np.uint8)


def test_labels_are_exact_on_the_source_grid() -> None:
    volume, truth = _volume()
    pred = predict_volume(ThresholdNet(), threshold_meta(), volume, device="cpu", largest_component=False)
    assert pred.labels.dtype == np.uint8 and pred.labels.shape == volume.array.shape
    assert pred.geometry == volume.geometry
    np.testing.assert_array_equal(pred.labels, _expected(volume))
    assert pred.uncertainty is None and pred.slice_scores == {}
    assert pred.info["device"] == "cpu" and pred.info["windows"] == 2 * 3 * 4


def test_reorientation_to_the_model_grid_and_back_is_exact(oblique_geometry: Geometry) -> None:
    """A model trained in RAS on an oblique LPS-ish scan: permuted/flipped axes, same voxels."""
    volume, _ = _volume(oblique_geometry)
    meta = threshold_meta(orientation="RAS")
    assert model_grid(volume.geometry, None, "RAS").orientation == "RAS"
    pred = predict_volume(ThresholdNet(), meta, volume, device="cpu", largest_component=False)
    assert pred.geometry == oblique_geometry
    np.testing.assert_array_equal(pred.labels, _expected(volume))


def test_model_spacing_resamples_there_and_back(oblique_geometry: Geometry) -> None:
    volume, truth = _volume(oblique_geometry)
    meta = threshold_meta(spacing=[1.4, 1.8, 3.0], orientation="LPS")
    pred = predict_volume(ThresholdNet(), meta, volume, device="cpu")
    assert pred.labels.shape == volume.array.shape and pred.labels.dtype == np.uint8
    assert pred.info["model_grid"] == list(model_grid(oblique_geometry, (1.4, 1.8, 3.0), "LPS").size)
    dice = 2 * (pred.labels & truth).sum() / (pred.labels.sum() + truth.sum())
    assert dice > 0.9


def test_the_last_slice_beyond_a_coarser_grid_keeps_its_labels() -> None:
    """101 slices of 1 mm on a 2 mm model grid: the grid's rounded size (50) stops short of slice
    100, which takes the nearest model voxel's labels and uncertainty, not background and 0."""
    g = Geometry(size=(12, 10, 101), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = np.zeros(g.shape_zyx, np.float32)
    image[:, 3:7, 3:9] = 10.0  # a bar through every slice
    meta = threshold_meta(spacing=[1.0, 1.0, 2.0], arch_args={"threshold": 0.5})
    pred = predict_volume(ThresholdNet(threshold=0.5), meta, Volume(image, g), device="cpu", uncertainty="entropy")
    assert model_grid(g, (1.0, 1.0, 2.0), None).size[2] == 50
    np.testing.assert_array_equal(pred.labels[100], pred.labels[98])
    assert pred.labels[100].sum() == 4 * 6
    np.testing.assert_allclose(pred.uncertainty[100], pred.uncertainty[99], atol=1e-6)


def test_vnet_prediction_equals_a_direct_forward_pass() -> None:
    """One window covering the volume: folded batch norm + channels-last give the network's own labels."""
    torch.manual_seed(0)
    meta = tiny_vnet_meta(patch_size=[32, 32, 48])
    net = build_network(meta)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    volume, _ = _volume(
        Geometry(size=(48, 32, 32), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    )
    with torch.no_grad():
        direct = net(torch.from_numpy(Normalization()(volume.array))[None, None])[0].argmax(0).numpy()
    pred = predict_volume(net, meta, volume, device="cpu", overlap=0.0, largest_component=False)
    assert pred.info["windows"] == 1
    assert (pred.labels == direct).mean() > 0.999


def test_batchnorm_folding_keeps_outputs() -> None:
    torch.manual_seed(1)
    net = build_network(tiny_vnet_meta()).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
    x = torch.randn(1, 1, 16, 16, 32)
    fast, channels_last = inference_copy(net, torch.device("cpu"))
    assert channels_last
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())  # original untouched
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last_3d)), net(x), rtol=1e-4, atol=1e-4)
    assert fold_batchnorm(build_network(tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "instance"})).eval()) == 0


def test_largest_component_keeps_the_bigger_blob() -> None:
    image, _ = make_blob_volume((24, 32, 40))
    image[2:6, 2:6, 2:6] = 180.0  # a separate bright speck
    volume = Volume(
        image, Geometry(size=(40, 32, 24), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    )
    kept = predict_volume(ThresholdNet(), threshold_meta(), volume, device="cpu", largest_component=True).labels
    every = predict_volume(ThresholdNet(), threshold_meta(), volume, device="cpu", largest_component=False).labels
    assert every[2:6, 2:6, 2:6].all() and not kept[2:6, 2:6, 2:6].any()
    np.testing.assert_array_equal(kept[8:], every[8:])


def test_tta_and_uncertainty_maps() -> None:
    volume, _ = _volume()
    pred = predict_volume(
        ThresholdNet(),
        threshold_meta(),
        volume,
        device="cpu",
        tta=True,
        uncertainty="entropy",
        largest_component=False,
        precision="fp32",
    )
    np.testing.assert_array_equal(pred.labels, _expected(volume))  # a per-voxel model is flip-invariant
    u = pred.uncertainty
    assert u.dtype == np.float16 and u.shape == volume.array.shape and 0.0 <= u.min() and u.max() <= 1.0
    p = 1.0 / (1.0 + np.exp(-2 * 4.0 * (Normalization()(volume.array) - 2.0)))  # ThresholdNet's softmax
    entropy = -(p * np.log(np.clip(p, 1e-8, 1)) + (1 - p) * np.log(np.clip(1 - p, 1e-8, 1))) / np.log(2)
    np.testing.assert_allclose(u.astype(np.float32), entropy, atol=2e-3)
    assert u.max() > 0.5  # some voxels near the threshold
    assert set(pred.slice_scores) == {"z", "y", "x"}
    z = pred.slice_scores["z"]
    assert z.shape == (24,) and np.isclose(z[5], u[5].astype(np.float32).mean(), atol=1e-3)
    assert pred.slice_scores["z"][12] > pred.slice_scores["z"][0]  # the blob's middle slice, not the empty edge
    u32 = predict_volume(
        ThresholdNet(), threshold_meta(), volume, device="cpu", uncertainty="entropy", uncertainty_dtype="float32"
    ).uncertainty
    assert u32.dtype == np.float32


def test_mc_dropout_gives_uncertainty_and_needs_dropout() -> None:
    torch.manual_seed(0)
    meta = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "batch", "dropout": 0.5})
    volume, _ = _volume()
    net = build_network(meta).eval()
    once = predict_volume(net, meta, volume, device="cpu", uncertainty="entropy", uncertainty_dtype="float32")
    mc = predict_volume(net, meta, volume, device="cpu", mc_dropout=3, uncertainty="entropy", uncertainty_dtype="float32")
    assert not np.allclose(once.uncertainty, mc.uncertainty)
    assert not any(m.training for m in net.modules())  # the caller's network stays in eval mode
    plain = tiny_vnet_meta(arch_args={"n_filters": 2, "normalization": "batch", "dropout": 0.0})
    with pytest.raises(ModelError, match="no dropout layers"):
        predict_volume(build_network(plain).eval(), plain, volume, device="cpu", mc_dropout=2)


def test_progress_reaches_the_end_and_cancel_stops() -> None:
    volume, _ = _volume()
    calls: list[tuple[int, int, str]] = []
    predict_volume(
        ThresholdNet(), threshold_meta(), volume, device="cpu", batch_size=4, progress=lambda d, t, m: calls.append((d, t, m))
    )
    assert calls[0][0] == 0 and calls[-1][:2] == (calls[-1][1], calls[-1][1]) and calls[-1][1] == 6 + 2
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    n = []
    with pytest.raises(CancelledError):
        predict_volume(
            ThresholdNet(),
            threshold_meta(),
            volume,
            device="cpu",
            batch_size=1,
            progress=lambda d, t, m: n.append(d),
            cancelled=lambda: len(n) > 3,
        )


@pytest.mark.parametrize("spacing", [None, [2.0, 2.0, 2.0]])
def test_cancel_during_the_last_window_batch_still_cancels(spacing) -> None:
    """Cancel pressed while the last windows run (or while mapping back) gives no result."""
    volume, _ = _volume()
    calls: list[tuple[int, int]] = []
    with pytest.raises(CancelledError):
        predict_volume(ThresholdNet(), threshold_meta(spacing=spacing), volume, device="cpu", batch_size=64,
                       progress=lambda d, t, m: calls.append((d, t)),
                       cancelled=lambda: bool(calls) and calls[-1][0] >= calls[-1][1] - 2)  # fmt: skip


def test_volume_smaller_than_the_patch_is_padded() -> None:
    volume, _ = _volume(
        Geometry(size=(10, 7, 12), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    )
    pred = predict_volume(ThresholdNet(), threshold_meta(patch_size=[16, 16, 16]), volume, device="cpu", largest_component=False)
    np.testing.assert_array_equal(pred.labels, _expected(volume))
    assert any("padded" in n for n in pred.info["notes"])


def test_nan_voxels_of_an_array_count_as_the_lowest_intensity_as_the_reader_makes_them() -> None:
    """An array that did not come through read_volume (a napari layer): NaN/Inf voxels made the
    whole normalised scan NaN, so the labels came back empty (harmonised: 'one intensity everywhere')."""
    volume, _ = _volume()
    holed = volume.array.copy()
    holed[0, :, :5] = np.nan
    holed[1, 0, 0] = np.inf
    filled = np.where(np.isfinite(holed), holed, np.nanmin(holed[np.isfinite(holed)]))
    expected = _expected(Volume(array=filled, geometry=volume.geometry))
    acc = StyleAccumulator([16, 16, 16])
    acc.add(model_input(volume, threshold_meta())[0])
    styled = threshold_meta(style=acc.result().to_dict())
    for harmonize in ("off", "intensity"):
        pred = predict_volume(ThresholdNet(), styled, Volume(array=holed, geometry=volume.geometry), device="cpu",
                              largest_component=False, harmonize=harmonize)  # fmt: skip
        assert pred.labels.any()
        if harmonize == "off":
            np.testing.assert_array_equal(pred.labels, expected)
    with pytest.raises(VolumeReadError, match="the scan: every voxel is NaN or infinite"):
        predict_volume(ThresholdNet(), threshold_meta(), Volume(array=np.full_like(holed, np.nan), geometry=volume.geometry),
                       device="cpu")  # fmt: skip


def test_models_that_do_not_fit_are_refused() -> None:
    volume, _ = _volume()
    with pytest.raises(ModelError, match="expects 2 input channels"):
        predict_volume(ThresholdNet(), threshold_meta(in_channels=2), volume, device="cpu")
    with pytest.raises(ModelError, match="outputs 2 classes but its metadata names 3"):
        predict_volume(ThresholdNet(), threshold_meta(classes=["a", "b", "c"]), volume, device="cpu")
    vnet = build_network(tiny_vnet_meta())
    with pytest.raises(ModelError, match="multiples of 16"):
        predict_volume(vnet, tiny_vnet_meta(patch_size=[16, 24, 16]), volume, device="cpu")
    with pytest.raises(ModelError, match="overlap"):
        predict_volume(ThresholdNet(), threshold_meta(), volume, overlap=1.0)


def test_cuda_asked_for_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_freqseg.inference import device

    monkeypatch.setattr(device, "cuda_available", lambda: False)
    with pytest.raises(ResourceError, match="CUDA was asked for"):
        predict_volume(ThresholdNet(), threshold_meta(), _volume()[0], device="cuda")


def test_enormous_volume_is_refused_before_any_work() -> None:
    size = (2048, 2048, 1200)
    huge = Geometry(size=size, spacing=(0.3, 0.3, 0.3), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    array = np.broadcast_to(np.zeros(1, np.float32), huge.shape_zyx)  # no memory behind it
    meta = tiny_vnet_meta(patch_size=[96, 96, 96])
    need = estimate_memory(huge, huge, meta, build_network(meta), 2, False)
    assert need > 4 * 2048 * 2048 * 1200 * 3  # input + two class maps, at least
    with pytest.raises(ResourceError, match=r"needs about \d+\.\d GiB of memory, more than the 8\.0 GiB available"):
        predict_volume(build_network(meta), meta, Volume(array, huge), device="cpu", memory_limit=8 * 1024**3)


def test_largest_component_equals_scipys_labelling() -> None:
    """SimpleITK's 26-connected labelling keeps the same voxels as scipy.ndimage.label would."""
    from scipy import ndimage

    from napari_freqseg.inference.postprocess import largest_component

    rng = np.random.default_rng(3)
    labels = (ndimage.gaussian_filter(rng.normal(size=(30, 34, 38)), 1.5) > 0.12).astype(np.uint8)
    labels[(ndimage.gaussian_filter(rng.normal(size=labels.shape), 1.5) > 0.15) & (labels == 0)] = 2
    expected = labels.copy()
    for c in (1, 2):
        components, n = ndimage.label(expected == c, structure=np.ones((3, 3, 3), bool))
        assert n > 3  # several pieces per class, or the test proves nothing
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        expected[(expected == c) & (components != sizes.argmax())] = 0
    np.testing.assert_array_equal(largest_component(labels.copy()), expected)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_class_argmax_equals_torch_argmax_ties_included(k: int) -> None:
    from napari_freqseg.inference.postprocess import class_argmax

    scores = torch.randint(0, 3, (k, 7, 9, 11)).float()  # many ties: the first maximum must win
    labels = class_argmax(scores)
    assert labels.dtype == torch.uint8 and torch.equal(labels, scores.argmax(0).to(torch.uint8))
