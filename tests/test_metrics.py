"""Metrics: cross-checked against MONAI, anisotropic spacing, empty-mask conventions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

from napari_freqseg.metrics import ClassMetrics, asd, binary_metrics, dice, hd95, jaccard, label_metrics

SPACING = (2.5, 0.7, 0.9)  # (z, y, x) mm, strongly anisotropic


def random_shape(rng: np.random.Generator, shape: tuple[int, int, int] = (20, 30, 36)) -> np.ndarray:
    """A random ellipsoid (in mm) plus a few scattered voxels, so surfaces are irregular."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING)], indexing="ij")
    centre = [rng.uniform(0.3, 0.7) * n * s for n, s in zip(shape, SPACING)]
    radii = rng.uniform(4, 10, 3)
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1
    return inside | (rng.random(shape) < 0.002)


def monai_metrics(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    yp = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    y = torch.from_numpy(np.stack([~truth, truth])[None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = compute_dice(yp, y, include_background=False).item()
        h = compute_hausdorff_distance(yp, y, percentile=95, spacing=SPACING).item()
        s = compute_average_surface_distance(yp, y, symmetric=True, spacing=SPACING).item()
    return d, h, s


@pytest.mark.parametrize("seed", range(4))
def test_matches_monai_on_random_shapes_with_anisotropic_spacing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, truth = random_shape(rng), random_shape(rng)
    m = binary_metrics(pred, truth, SPACING)
    d, h, s = monai_metrics(pred, truth)
    assert m.dice == pytest.approx(d, rel=1e-6)
    assert m.hd95 == pytest.approx(h, rel=1e-5)
    assert m.asd == pytest.approx(s, rel=1e-5)
    assert m.hd95 > 1.0 and 0 < m.dice < 1  # a real disagreement, not a trivial case
    assert m.jaccard == pytest.approx(m.dice / (2 - m.dice))


def test_distances_use_the_spacing_of_each_axis() -> None:
    truth = np.zeros((12, 12, 12), bool)
    truth[3:8, 3:8, 3:8] = True
    shifted_z = np.roll(truth, 2, axis=0)
    shifted_x = np.roll(truth, 2, axis=2)
    spacing = (3.0, 1.0, 0.5)
    # Every surface point moves by 2 voxels along one axis at most; the far faces move exactly that.
    assert hd95(shifted_z, truth, spacing) == pytest.approx(6.0)
    assert hd95(shifted_x, truth, spacing) == pytest.approx(1.0)
    assert asd(shifted_z, truth, spacing) > 2 * asd(shifted_x, truth, spacing)
    # Distances are lengths: scaling every spacing scales them.
    assert asd(shifted_z, truth, tuple(4 * s for s in spacing)) == pytest.approx(4 * asd(shifted_z, truth, spacing))


def test_identical_masks_are_perfect() -> None:
    m = binary_metrics(random_shape(np.random.default_rng(5)), random_shape(np.random.default_rng(5)), SPACING)
    assert m == ClassMetrics(dice=1.0, jaccard=1.0, hd95=0.0, asd=0.0)


def test_empty_mask_conventions() -> None:
    empty = np.zeros((8, 8, 8), bool)
    cube = empty.copy()
    cube[2:5, 2:5, 2:5] = True
    assert binary_metrics(empty, empty) == ClassMetrics(1.0, 1.0, 0.0, 0.0)
    for a, b in ((empty, cube), (cube, empty)):
        m = binary_metrics(a, b)
        assert (m.dice, m.jaccard) == (0.0, 0.0)
        assert math.isinf(m.hd95) and math.isinf(m.asd)
        assert m.to_dict() == {"dice": 0.0, "jaccard": 0.0, "hd95": None, "asd": None}


def test_dice_and_jaccard_by_counting() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[0, :2, :] = True  # 8 voxels
    b[0, 1:3, :] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert jaccard(a, b) == pytest.approx(4 / 12)


def test_label_metrics_per_class() -> None:
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[1:4, 1:4, 1:4] = 1
    truth[6:9, 6:9, 6:9] = 2
    pred = truth.copy()
    pred[pred == 2] = 0
    pred[0, 0, 0] = 3
    result = label_metrics(pred, truth, (1.0, 1.0, 1.0))
    assert sorted(result) == [1, 2, 3]
    assert result[1].dice == 1.0 and result[1].hd95 == 0.0
    assert result[2].dice == 0.0 and math.isinf(result[2].hd95)
    assert result[3].dice == 0.0
    assert sorted(label_metrics(pred, truth, classes=[2])) == [2]


def test_label_metrics_refuses_probabilities() -> None:
    with pytest.raises(ValueError, match="not a label map"):
        label_metrics(np.full((4, 4, 4), 0.5, np.float32), np.zeros((4, 4, 4), np.uint8))
    whole = label_metrics(np.ones((4, 4, 4), np.float32), np.ones((4, 4, 4), np.uint8))
    assert whole[1].dice == 1.0


def test_fast_enough_on_a_left_atrium_sized_volume() -> None:
    import time

    rng = np.random.default_rng(0)
    shape = (88, 144, 176)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    truth = (zz / 0.6) ** 2 + (yy / 0.5) ** 2 + (xx / 0.45) ** 2 <= 1
    pred = (zz / 0.55) ** 2 + ((yy - 0.05) / 0.5) ** 2 + (xx / 0.5) ** 2 <= 1 + 0.05 * rng.random(shape)
    start = time.perf_counter()
    m = binary_metrics(pred, truth, (0.625, 0.625, 0.625))
    assert time.perf_counter() - start < 10.0
    assert 0.8 < m.dice < 1.0 and 0 < m.asd < m.hd95
