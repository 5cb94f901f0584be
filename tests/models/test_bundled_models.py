"""The models shipped inside the package: each loads from safetensors alone, says how it was made, stays
under 10 MB and segments the shipped LA sample case (a val case it never trained on) well."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_freqseg import metrics
from napari_freqseg._sample_data import sample_path
from napari_freqseg.inference.predict import predict_volume
from napari_freqseg.io.volume import read_volume
from napari_freqseg.models import registry
from napari_freqseg.models.modelfile import load_model

REPO = Path(__file__).resolve().parents[2]
BUNDLED = sorted(registry.BUNDLED_DIR.glob("*.safetensors"))


def test_the_la_models_of_the_comparison_ship() -> None:
    assert {p.stem for p in BUNDLED} == {"la-vnet-sup", "la-vnet-freq-bfa"}
    assert registry.PREFERRED in {p.stem for p in BUNDLED}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_model_is_documented_and_small(path: Path) -> None:
    assert path.stat().st_size <= 10 * 2**20
    _, meta = load_model(path)
    training = meta.training
    assert meta.name == path.stem
    assert training["command"].startswith("freqseg train configs/compare/") and "--seed 0" in training["command"]
    assert (REPO / training["command"].split()[2]).is_file(), "the documented recipe is in the repository"
    assert training["iteration"] == training["iterations"] == 2000  # the last checkpoint, not the best
    assert len(training["labeled_cases"]) == 8
    assert training["labeled_fraction"] == pytest.approx(8 / (8 + training["unlabeled_cases"]))
    assert meta.metrics["val_dice"] >= 0.85 and len(meta.metrics["val_cohort"]) == 8
    assert "CCGAKN4EDT72KC8TTJ76" not in training["labeled_cases"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_model_segments_the_la_sample(path: Path, single_thread) -> None:
    network, meta = load_model(path)
    volume = read_volume(sample_path("la"))
    truth = read_volume(sample_path("la", label=True)).array > 0
    pred = predict_volume(network, meta, volume, device="cpu", overlap=0.25)
    assert pred.labels.shape == volume.array.shape
    # The sample is the hardest of the 8 val cases for these models (0.78 at overlap 0.5).
    assert metrics.dice(pred.labels == 1, truth) > 0.72
