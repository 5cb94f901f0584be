"""Whole-volume augmentation and reliance: same grid out, change only where the method acts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_freqseg.errors import FreqsegError
from napari_freqseg.frequency import low_freq_box, shell_index
from napari_freqseg.frequency.volumes import augment_volume, volume_reliance
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.models import ModelMeta, Normalization, save_model
from napari_freqseg.models.resolve import resolve_model

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _geometry(shape_zyx: tuple[int, int, int], spacing_xyz: tuple[float, float, float]) -> Geometry:
    return Geometry(size=shape_zyx[::-1], spacing=spacing_xyz, origin=(3.0, -2.0, 5.0), direction=IDENTITY)


def _volume(shape: tuple[int, int, int], seed: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = (zz**2 + yy**2 + xx**2 < 0.4).astype(np.float32)
    return (level + level * blob + 5 * rng.standard_normal(shape)).astype(np.float32)


def _full_amp(a: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.fftn(a.astype(np.float64)))


def test_fda_with_a_reference_on_another_grid() -> None:
    vol, geo = _volume((20, 24, 22), 0, 100.0), _geometry((20, 24, 22), (1.0, 1.0, 1.5))
    ref, ref_geo = _volume((14, 18, 16), 1, 30.0), _geometry((14, 18, 16), (1.4, 1.3, 2.0))
    result = augment_volume(vol, geo, "fda", reference=ref, reference_geometry=ref_geo, beta=0.1)
    assert result.array.shape == vol.shape and result.array.dtype == np.float32
    box = low_freq_box(vol.shape, 0.1, half=False).numpy()
    np.testing.assert_allclose(_full_amp(result.array)[~box], _full_amp(vol)[~box], rtol=1e-3, atol=0.05)
    assert result.array.mean() < 0.6 * vol.mean()  # the darker centre's style came in
    assert result.info["ratio"] == 1.0 and result.info["beta"] == 0.1


def test_tp_ram_is_seeded() -> None:
    vol, geo = _volume((16, 16, 16), 2, 100.0), _geometry((16, 16, 16), (1.0, 1.0, 1.0))
    ref = _volume((16, 16, 16), 3, 20.0)
    runs = [augment_volume(vol, geo, "tp-ram", reference=ref, reference_geometry=geo, strength=0.5, seed=s) for s in (1, 1, 2)]
    assert runs[0].info["ratio"] == runs[1].info["ratio"] != runs[2].info["ratio"]
    assert 0.0 <= runs[0].info["ratio"] <= 0.5
    np.testing.assert_array_equal(runs[0].array, runs[1].array)


def test_laae_changes_only_the_low_frequency_box_of_the_volume() -> None:
    vol, geo = _volume((32, 32, 32), 4, 100.0), _geometry((32, 32, 32), (1.0, 1.0, 1.0))
    model = resolve_model("random", seed=0)
    result = augment_volume(vol, geo, "laae", model=model, strength=2.0, beta=0.1)
    box = low_freq_box(vol.shape, 0.1, half=False).numpy()
    amp_in, amp_out = _full_amp(vol), _full_amp(result.array)
    np.testing.assert_allclose(amp_out[~box], amp_in[~box], rtol=1e-3, atol=0.5)
    assert np.abs(amp_out[box] - amp_in[box]).max() > 1.0
    assert result.info["direction"] == "up" and result.info["target"] == "model prediction"
    assert len(result.info["shift_mean"]) == 1 and abs(result.info["shift_mean"][0]) == 2.0


def test_fase_reweights_physical_bands_by_the_reported_weights() -> None:
    vol, geo = _volume((16, 32, 32), 5, 100.0), _geometry((16, 32, 32), (1.0, 1.0, 2.0))
    labels = (vol > 150).astype(np.uint8)
    result = augment_volume(vol, geo, "fase", model=resolve_model("random", 1), labels=labels, n_bands=4)
    weights = np.asarray(result.info["weights"])
    assert weights.shape == (4,) and np.all((weights >= 0) & (weights <= 2))
    assert result.info["target"] == "labels"
    # z-score is affine: the raw change is the normalised change times the std
    idx = shell_index(vol.shape, 4, (2.0, 1.0, 1.0), half=False).numpy()
    f_in, f_out = np.fft.fftn(vol - vol.mean()), np.fft.fftn(result.array - vol.mean())
    for band in range(1, 4):
        ratio = np.abs(f_out[idx == band]) / np.abs(f_in[idx == band])
        np.testing.assert_allclose(ratio, weights[band], rtol=1e-3)


def test_model_grid_round_trip_keeps_the_source_grid(tmp_path, monkeypatch) -> None:
    network = torch.nn.Conv3d(1, 2, 3, padding=1)
    meta = ModelMeta(name="tiny", architecture="vnet", arch_args={}, classes=["bg", "fg"], spacing=[2.0, 2.0, 2.0])
    path = save_model(tmp_path / "tiny.safetensors", network, meta)
    vol, geo = _volume((20, 24, 22), 6, 100.0), _geometry((20, 24, 22), (1.0, 1.0, 1.0))
    with pytest.raises(FreqsegError):
        resolve_model(str(path))  # 'vnet' with a Conv3d state dict: weights do not fit
    from napari_freqseg.models import VNet

    vnet = VNet(n_filters=2, normalization="instance")
    path = save_model(
        tmp_path / "vnet.safetensors",
        vnet,
        ModelMeta(
            name="vnet",
            architecture="vnet",
            arch_args={"n_filters": 2, "normalization": "instance"},
            classes=["bg", "fg"],
            spacing=[2.0, 2.0, 2.0],
            normalization=Normalization().to_dict(),
        ),
    )
    model = resolve_model(str(path))
    assert model.spacing == (2.0, 2.0, 2.0)
    monkeypatch.setenv("FREQSEG_MODELS", str(tmp_path))  # the same model by its name, as every command takes it
    assert resolve_model("vnet").name == "vnet" and resolve_model("vnet").spacing == (2.0, 2.0, 2.0)
    result = augment_volume(vol, geo, "laae", model=model)
    assert result.array.shape == vol.shape
    curve = volume_reliance(vol, geo, model, n_bands=3)
    assert curve.unit == "cycles/mm" and curve.edges[-1] == pytest.approx(0.25)  # Nyquist of the 2 mm model grid


def test_missing_inputs_are_user_errors() -> None:
    vol, geo = _volume((8, 8, 8), 7, 10.0), _geometry((8, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(FreqsegError, match="reference"):
        augment_volume(vol, geo, "fda")
    with pytest.raises(FreqsegError, match="model"):
        augment_volume(vol, geo, "fase")
    with pytest.raises(FreqsegError, match="unknown method"):
        augment_volume(vol, geo, "mixup")
    with pytest.raises(FreqsegError, match="no such model"):
        resolve_model("nothing.safetensors")


def test_random_model_is_seeded_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = resolve_model("random", 5), resolve_model("random", 5)
    assert torch.rand(1) == expected
    for pa, pb in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(pa, pb)


def test_frequency_views_predict_like_segment(tmp_path) -> None:
    """The reliance baseline and L-AAE targets come from the same sliding window, with the model's
    own patch, as `freqseg segment` (an instance-norm model changes with its window)."""
    from napari_freqseg.frequency.volumes import whole_volume_logits
    from napari_freqseg.inference import predict_volume
    from napari_freqseg.io.volume import Volume
    from napari_freqseg.models import VNet, load_model

    torch.manual_seed(0)
    meta = ModelMeta(
        name="tiny",
        architecture="vnet",
        arch_args={"n_filters": 2, "normalization": "instance"},
        classes=["bg", "fg"],
        spacing=None,
        orientation=None,
        patch_size=[16, 32, 32],
    )
    path = save_model(tmp_path / "tiny.safetensors", VNet(n_filters=2, normalization="instance"), meta)
    shape = (24, 48, 40)
    vol, geo = _volume(shape, 3, 10.0), _geometry(shape, (1.0, 1.0, 1.0))
    model = resolve_model(str(path))
    assert model.patch_size == (16, 32, 32)
    x = torch.from_numpy(np.asarray(model.normalize(vol), dtype=np.float32))[None, None]
    ours = whole_volume_logits(model, x).argmax(1)[0].numpy()
    network, meta = load_model(path)
    segment = predict_volume(
        network, meta, Volume(array=vol, geometry=geo), device="cpu", largest_component=False, precision="fp32"
    ).labels
    assert (ours == segment).mean() > 0.999
