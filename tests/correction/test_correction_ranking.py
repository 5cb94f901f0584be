"""Slice ranking from uncertainty maps and teacher/student disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from napari_freqseg.correction import disagreement, rank_slices, slice_scores


def _prediction_with_errors(shape=(20, 24, 28), bad=(3, 11, 16), axis=0, seed=0):
    """Truth blob, a prediction wrong on some voxels of the `bad` slices, and its error probability."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    truth = (zz**2 + yy**2 + xx**2 <= 0.7).astype(np.uint8)
    p_error = np.full(shape, 0.01, dtype=np.float32)
    key = [slice(None)] * 3
    for i, s in enumerate(bad):
        key[axis] = s
        p_error[tuple(key)] = 0.2 + 0.1 * i
    flips = rng.random(shape) < p_error
    prediction = np.where(flips, 1 - truth, truth).astype(np.uint8)
    return truth, prediction, p_error


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_top_slices_are_the_ones_with_most_errors(axis):
    truth, prediction, p_error = _prediction_with_errors(axis=axis)
    scores = slice_scores(p_error, axis=axis)
    assert scores.shape == (truth.shape[axis],)
    ranked = rank_slices(scores)
    assert ranked[:3] == [16, 11, 3]
    errors = (prediction != truth).sum(axis=tuple(a for a in range(3) if a != axis))
    # The sum score is the expected number of wrong voxels: it tracks the real error counts.
    assert np.corrcoef(scores, errors)[0, 1] > 0.95


def test_sum_and_mean_differ_only_by_slice_area():
    u = np.random.default_rng(1).random((5, 6, 7)).astype(np.float16)
    s = slice_scores(u, axis=1, reduce="sum")
    m = slice_scores(u, axis=1, reduce="mean")
    assert s.dtype == np.float64
    np.testing.assert_allclose(s, u.astype(np.float64).sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(m * 5 * 7, s, rtol=1e-12)
    with pytest.raises(ValueError):
        slice_scores(u, axis=3)
    with pytest.raises(ValueError):
        slice_scores(u[0], axis=0)


def test_rank_skips_corrected_and_spreads_with_min_distance():
    scores = np.array([0.1, 0.9, 0.8, 0.85, 0.2, 0.7, 0.0, 0.7])
    assert rank_slices(scores) == [1, 3, 2, 5, 7, 4, 0]  # ties keep the lower index first; 6 scores 0
    assert rank_slices(scores, exclude=[1, 3]) == [2, 5, 7, 4, 0]
    # Neighbours closer than 2 to a better slice or to a corrected one are dropped.
    assert rank_slices(scores, min_distance=2) == [1, 3, 5, 7]
    assert rank_slices(scores, exclude=[3], min_distance=2) == [1, 5, 7]


def test_disagreement_of_label_maps_and_probabilities():
    a = np.zeros((4, 5, 6), np.uint8)
    b = a.copy()
    b[2, 1:3, 1:4] = 1
    d = disagreement(a, b)
    assert d.dtype == np.float32 and d.sum() == 6 and d[2, 1, 1] == 1
    p = np.random.default_rng(2).dirichlet([1, 1, 1], size=(4, 5, 6)).transpose(3, 0, 1, 2)
    assert np.all(disagreement(p, p) == 0)
    one_hot_a = np.stack([np.ones((4, 5, 6)), np.zeros((4, 5, 6))])
    tv = disagreement(one_hot_a, one_hot_a[::-1])
    np.testing.assert_allclose(tv, 1.0)
    q = np.random.default_rng(3).dirichlet([1, 1, 1], size=(4, 5, 6)).transpose(3, 0, 1, 2)
    tv = disagreement(p, q)
    assert tv.min() >= 0 and tv.max() <= 1 and tv.mean() > 0.1
    with pytest.raises(ValueError):
        disagreement(a, b[:, :, :3])


def test_voxels_of_corrected_slices_count_zero_on_every_axis():
    u = np.full((6, 7, 8), 0.1, np.float32)
    u[2, 3] = 0.9  # a row of the corrected axial slice 2
    corrected = np.zeros(u.shape, bool)
    corrected[2] = True
    y = slice_scores(u, axis=1, corrected=corrected)
    np.testing.assert_allclose(y, np.full(7, 0.1 * 5 * 8), rtol=1e-6)  # y 3 no longer leads
    assert slice_scores(u, axis=0, corrected=corrected)[2] == 0
    with pytest.raises(ValueError, match="differ in shape"):
        slice_scores(u, corrected=corrected[1:])
