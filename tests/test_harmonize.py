"""Harmonisation to a model's training style: the stored style, landmark matching, window FDA onto
the training mean, and the paths through predict_volume, the model file and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import ThresholdNet, make_blob_volume, threshold_meta

from napari_freqseg.cli import main
from napari_freqseg.errors import ModelError, VolumeReadError
from napari_freqseg.frequency.bands import low_freq_box
from napari_freqseg.frequency.spectrum import amplitude_phase
from napari_freqseg.harmonize import (
    PERCENTILES,
    SpectrumHarmonized,
    StyleAccumulator,
    TrainingStyle,
    match_landmarks,
    scan_landmarks,
)
from napari_freqseg.inference import predict_volume
from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.volume import Volume, read_volume, write_volume
from napari_freqseg.models.modelfile import load_model, read_meta, save_model

PATCH = [8, 12, 12]


def style_of(volumes: list[np.ndarray], patch=PATCH) -> TrainingStyle:
    acc = StyleAccumulator(patch, seed=0)
    for v in volumes:
        acc.add(v)
    return acc.result()


def test_style_round_trips_and_malformed_styles_are_refused() -> None:
    rng = np.random.default_rng(0)
    style = style_of([rng.normal(0, 1, (16, 20, 24)).astype(np.float32) for _ in range(3)])
    assert TrainingStyle.from_dict(style.to_dict()) == style and style.scans == 3
    assert len(style.amplitude) == int(low_freq_box(PATCH, style.beta).sum())
    for broken in ({"amplitude": style.amplitude[:-1]}, {"landmarks": [0.0]}, {"percentiles": list(reversed(style.percentiles))},
                   {"amplitude": [float("nan")] * len(style.amplitude)}, {"version": 99},
                   {"landmarks": [0.0] * len(style.landmarks)}, {"landmarks": list(reversed(style.landmarks))}):  # fmt: skip
        with pytest.raises(ModelError, match="style is malformed"):
            TrainingStyle.from_dict({**style.to_dict(), **broken}, "m.safetensors")
    with pytest.raises(ModelError, match="style is malformed"):
        TrainingStyle.from_dict([1, 2, 3])


def test_landmark_matching_undoes_a_monotone_contrast_change() -> None:
    rng = np.random.default_rng(1)
    reference = rng.gamma(2.0, 1.0, (20, 24, 24)).astype(np.float32)
    style = style_of([reference])
    curved = np.power(reference, 1.8) * 3.0 + 7.0  # another scanner's contrast curve
    mapped = match_landmarks(curved.astype(np.float32), style)
    np.testing.assert_allclose(scan_landmarks(mapped), style.landmarks, rtol=0.02, atol=0.02)
    inner = (reference > np.percentile(reference, 2)) & (reference < np.percentile(reference, 98))
    assert np.abs(mapped - reference)[inner].mean() < 0.05 * reference.std()  # intensities come back, not just the histogram
    assert len(PERCENTILES) == len(style.landmarks)


@pytest.mark.parametrize("keep_mean", [True, False])
def test_window_fda_moves_the_low_band_onto_the_training_mean_and_keeps_the_rest(keep_mean: bool, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    windows = rng.normal(0, 1, (6, *PATCH)).astype(np.float32)
    style = style_of([w for w in windows])
    seen = []

    class Echo(torch.nn.Module):
        def forward(self, x):  # noqa: ANN001
            seen.append(x.clone())
            return x

    monkeypatch.setattr(SpectrumHarmonized, "keep_mean", keep_mean)
    net = SpectrumHarmonized(Echo(), style, beta=style.beta)
    z = torch.linspace(0, 1, PATCH[0])[:, None, None]
    x = torch.from_numpy(windows[:2])[:, None] * (1 + 2 * z) + 5.0  # a bias field and an offset
    x[1] -= 10.0  # the second window darker than average: its mean is negative
    net(x)
    amp_in, phase_in = amplitude_phase(x)
    amp_out, phase_out = amplitude_phase(seen[0])
    box = low_freq_box(PATCH, style.beta)
    dc = torch.zeros_like(box)
    dc[(0,) * box.dim()] = True
    ref = style.reference_amplitude()
    moved = box & ~dc if keep_mean else box
    torch.testing.assert_close(amp_out[:, 0][:, moved], ref[moved].expand(2, -1), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(amp_out[:, 0][:, ~moved], amp_in[:, 0][:, ~moved], atol=1e-3, rtol=1e-3)
    keep = amp_in > 1e-3 * amp_in.max()  # phase is defined where there is amplitude
    torch.testing.assert_close(torch.cos(phase_out - phase_in)[keep], torch.ones(int(keep.sum())), atol=1e-3, rtol=0)
    means_in, means_out = x.mean((-3, -2, -1)).flatten(), seen[0].mean((-3, -2, -1)).flatten()
    if keep_mean:  # each window keeps its own brightness, dark or bright
        torch.testing.assert_close(means_out, means_in, atol=1e-4, rtol=1e-4)
    else:  # plain FDA: each window's |mean| becomes the training windows' mean |mean|, bright or dark
        assert torch.allclose(means_out.abs(), means_out[0].abs().expand(2), rtol=1e-3)
        assert (means_out.abs() < 0.1 * means_in.abs()).all() and torch.equal(means_out.sign(), means_in.sign())
    other = torch.zeros(1, 1, 4, 4, 4)
    assert torch.equal(net(other), other)  # a window of another size passes unchanged


def _blob_model(tmp_path: Path, monkeypatch, with_style: bool) -> tuple[Path, Volume, np.ndarray]:
    from napari_freqseg.models.modelfile import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "threshold", ThresholdNet)
    image, label = make_blob_volume((16, 20, 24))
    volume = Volume(
        image, Geometry(size=(24, 20, 16), spacing=(1.0, 1.0, 1.0), origin=(0, 0, 0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    )
    meta = threshold_meta(patch_size=[16, 16, 16], arch_args={"threshold": 0.5})
    if with_style:
        from napari_freqseg.inference.predict import model_input

        meta = dataclasses.replace(meta, style=style_of([model_input(volume, meta)[0]], [16, 16, 16]).to_dict())
    return save_model(tmp_path / "blob.safetensors", ThresholdNet(threshold=0.5), meta), volume, label


def test_predict_volume_harmonises_only_with_a_stored_style(tmp_path: Path, monkeypatch) -> None:
    path, volume, label = _blob_model(tmp_path, monkeypatch, with_style=True)
    network, meta = load_model(path)
    assert read_meta(path).style == meta.style and meta.style is not None
    plain = predict_volume(network, meta, volume, device="cpu", precision="fp32")
    same = predict_volume(network, meta, volume, device="cpu", precision="fp32", harmonize="intensity")
    assert np.array_equal(plain.labels, same.labels)  # the scan the style came from is already in style
    shifted = Volume(np.power(volume.array / volume.array.max(), 3.0) * 900.0 + 40.0, volume.geometry)
    fixed = predict_volume(network, meta, shifted, device="cpu", precision="fp32", harmonize="intensity")
    broken = predict_volume(network, meta, shifted, device="cpu", precision="fp32")
    agree = lambda a: float((a.labels == plain.labels).mean())  # noqa: E731
    assert agree(fixed) > agree(broken) and agree(fixed) > 0.99
    assert predict_volume(network, meta, shifted, device="cpu", harmonize="both").info["harmonize"] == "both"
    flat = Volume(np.full(volume.array.shape, 7.0, np.float32), volume.geometry)
    with pytest.raises(VolumeReadError, match="one intensity everywhere"):
        predict_volume(network, meta, flat, device="cpu", harmonize="spectrum")
    bare, _, _ = _blob_model(tmp_path / "bare", monkeypatch, with_style=False)
    network, meta = load_model(bare)
    with pytest.raises(ModelError, match="carries no training style, so harmonisation is unavailable"):
        predict_volume(network, meta, volume, device="cpu", harmonize="spectrum")


def test_cli_harmonize_and_models_style(tmp_path: Path, monkeypatch, capsys) -> None:
    path, volume, _ = _blob_model(tmp_path, monkeypatch, with_style=False)
    (tmp_path / "scans").mkdir()
    write_volume(volume.array, volume.geometry, tmp_path / "scans" / "a.nii.gz")
    write_volume(volume.array, volume.geometry, tmp_path / "scan.nii.gz")
    args = ["segment", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(path), "--quiet"]
    assert main([*args, "--harmonize"]) == 1
    err = capsys.readouterr().err
    assert "carries no training style" in err and err.count("\n") == 1 and not (tmp_path / "seg.nii.gz").exists()
    assert main([*args, "--harmonize", "sideways"]) == 1 and "use one of off, intensity" in capsys.readouterr().err
    assert main(["models", "style", str(path), "--from", str(tmp_path / "scans"), "--quiet"]) == 0
    assert read_meta(path).style["scans"] == 1
    capsys.readouterr()
    monkeypatch.setenv("FREQSEG_MODELS", str(path.parent))
    assert main(["models", "--json"]) == 0
    assert [m["style_scans"] for m in json.loads(capsys.readouterr().out)["models"] if m["name"] == "threshold"] == [1]
    assert main([*args, "--harmonize", "both"]) == 0
    assert read_volume(tmp_path / "seg.nii.gz").array.sum() > 0
    assert main(["models", "style", "la-vnet-sup", "--from", str(tmp_path / "scans")]) == 1
    assert "bundled model" in capsys.readouterr().err


def test_a_scan_of_one_intensity_gives_no_style(tmp_path: Path, monkeypatch, capsys) -> None:
    """Its landmarks are all one value: stored, they made `--harmonize intensity` map every scan to
    one intensity (the whole scan segmented). Refused in one line, the model file unchanged."""
    path, volume, _ = _blob_model(tmp_path, monkeypatch, with_style=False)
    (tmp_path / "scans").mkdir()
    write_volume(volume.array, volume.geometry, tmp_path / "scans" / "a.nii.gz")
    write_volume(np.full(volume.array.shape, 7.0, np.float32), volume.geometry, tmp_path / "scans" / "flat.nii.gz")
    before = path.read_bytes()
    assert main(["models", "style", str(path), "--from", str(tmp_path / "scans"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "flat.nii.gz: one intensity everywhere" in err and err.count("\n") == 1 and path.read_bytes() == before


def test_bundled_models_carry_the_style_of_their_training_scans() -> None:
    from napari_freqseg.models.registry import find_model

    for name, scans in (("la-vnet-sup", 8), ("la-vnet-freq-bfa", 40)):  # labeled, or labeled + unlabeled
        style = TrainingStyle.from_dict(read_meta(find_model(name)).style)
        assert style.scans == scans and style.patch == [32, 64, 64]
        assert style.landmarks[0] < 0 < style.landmarks[-1]  # z-scored intensities
