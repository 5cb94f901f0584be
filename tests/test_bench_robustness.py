"""benchmarks/bench_robustness.py on a tiny random model and one synthetic case."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import REPO, make_blob_volume

from napari_freqseg.evaluation import evaluate_arrays, model_predictor
from napari_freqseg.io import Geometry, Volume, read_volume, write_volume
from napari_freqseg.models import ModelMeta, build_network, save_model
from napari_freqseg.shift import apply_shift


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_robustness", REPO / "benchmarks" / "bench_robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    meta = ModelMeta(
        name="tiny",
        architecture="vnet",
        arch_args={"n_filters": 2, "normalization": "instance", "dropout": 0.0},
        classes=["background", "blob"],
        spacing=None,
        patch_size=[32, 32, 32],
    )
    network = build_network(meta)
    with torch.no_grad():
        network.classifier.bias.copy_(torch.tensor([0.0, 0.05]))  # a random net that predicts some foreground
    return save_model(tmp_path / "tiny.safetensors", network, meta)


@pytest.fixture
def one_case(tmp_path: Path) -> Path:
    geometry = Geometry((32, 32, 32), (1.2, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image, label = make_blob_volume((32, 32, 32), seed=2)
    (tmp_path / "data" / "c1").mkdir(parents=True)
    write_volume(image, geometry, tmp_path / "data" / "c1" / "image.nii.gz")
    write_volume(label, geometry, tmp_path / "data" / "c1" / "label.nii.gz")
    return tmp_path / "data"


def test_bench_robustness_on_a_tiny_model(
    tiny_model: Path, one_case: Path, single_thread: None, capsys: pytest.CaptureFixture
) -> None:
    bench = load_bench()
    argv = [str(tiny_model), "--data", str(one_case), "--kinds", "bias", "thick", "--severities", "1.0", "--seed", "3"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == ["c1"] and report["kinds"] == ["bias", "thick"]
    rows = report["models"]["tiny"]["conditions"]
    assert list(rows) == ["clean", "bias@1", "thick@1"]
    # Each number is the metric of the model's prediction on the (shifted) case, recomputed here.
    predict, _ = model_predictor(tiny_model, device="cpu")
    image, truth = read_volume(one_case / "c1" / "image.nii.gz"), read_volume(one_case / "c1" / "label.nii.gz")
    for key, kind in (("clean", None), ("bias@1", "bias"), ("thick@1", "thick")):
        array = image.array if kind is None else apply_shift(image.array, kind, 1.0, 3, image.geometry.scale_zyx)
        pred = predict(Volume(array=array, geometry=image.geometry))
        expected = evaluate_arrays(pred, truth.array, image.geometry)[1]
        assert rows[key]["dice"] == pytest.approx(expected.dice, abs=1e-4)  # printed to 4 decimals
        assert rows[key]["hd95"] == pytest.approx(expected.hd95, abs=1e-3)
    assert 0 < rows["clean"]["dice"] < 1
    assert rows["clean"]["dice_ratio"] == 1.0
    assert rows["bias@1"]["dice_ratio"] == pytest.approx(rows["bias@1"]["dice"] / rows["clean"]["dice"], abs=1e-4)
    assert report["models"]["tiny"]["predict_seconds_per_volume"] > 0
    assert np.isfinite(rows["thick@1"]["dice"])
