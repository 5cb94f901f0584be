"""Band-removal reliance curves: the peak sits where the model looks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from freq_toy import FilterNet

from napari_freqseg.errors import CancelledError
from napari_freqseg.frequency import reliance_curve


def _predictor(kind: str):
    net = FilterNet(kind).eval()
    return lambda t: net(t)


def _volume(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,expect_low", [("blur", True), ("laplacian", False)])
def test_loss_rise_peaks_on_the_bands_the_model_uses(kind: str, expect_low: bool) -> None:
    curve = reliance_curve(_predictor(kind), _volume(), n_bands=6)
    assert curve.metric == "loss_rise" and len(curve.values) == 6 and len(curve.edges) == 7
    assert curve.unit == "cycles/voxel" and curve.edges[-1] == pytest.approx(0.5)
    peak = int(np.argmax(curve.values))
    assert (peak <= 1) if expect_low else (peak >= 3)
    assert min(curve.values) >= -1e-6  # removing information never helps a model predicting itself


def test_dice_drop_with_labels_in_physical_units() -> None:
    x = _volume(1)
    predict = _predictor("blur")
    labels = predict(x).argmax(1)  # labels the model gets exactly right
    curve = reliance_curve(predict, x, labels, n_bands=4, spacing=(2.0, 1.0, 1.0))
    assert curve.metric == "dice_drop" and curve.baseline == pytest.approx(1.0)
    assert curve.unit == "cycles/mm" and curve.edges[-1] == pytest.approx(0.5)
    assert int(np.argmax(curve.values)) == 0 and curve.values[0] > 2 * curve.values[-1] > 0
    assert curve.to_dict()["values"] == curve.values


def test_progress_and_cancel() -> None:
    seen: list[tuple[int, int]] = []
    reliance_curve(_predictor("blur"), _volume(), n_bands=3, progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(CancelledError):
        reliance_curve(_predictor("blur"), _volume(), n_bands=3, cancelled=lambda: True)
