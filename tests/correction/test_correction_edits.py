"""Label edits on slices and volumes: fill holes, small components, smoothing, copy, interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from synthetic import make_blob_volume

from napari_freqseg.correction import (
    between_key,
    copy_slice,
    fill_holes,
    interpolate_slices,
    region_changes,
    remove_small_components,
    slice_key,
    smooth,
    weak_labels,
)
from napari_freqseg.metrics import dice


def _disc(shape, center, radius):
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _enclosed_background(labels):
    """Background voxels not face-connected to the array border."""
    comps, _ = ndimage.label(labels == 0)
    border = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        border[slice_key(axis, 0, labels.ndim)] = True
        border[slice_key(axis, -1, labels.ndim)] = True
    open_ids = np.unique(comps[border])
    return (labels == 0) & ~np.isin(comps, open_ids)


def test_fill_holes_leaves_no_enclosed_background_and_keeps_foreground():
    rng = np.random.default_rng(0)
    _, labels = make_blob_volume((24, 32, 40))
    holey = labels.copy()
    holey[(rng.random(labels.shape) < 0.2) & (ndimage.binary_erosion(labels, iterations=2))] = 0
    assert _enclosed_background(holey).sum() > 100
    out = fill_holes(holey)
    assert not _enclosed_background(out).any()
    np.testing.assert_array_equal(out, labels)  # the holes were all inside the blob
    assert holey.sum() < labels.sum()  # input untouched
    # Slice-wise on a 2D slice too.
    out2 = fill_holes(holey[12])
    assert not _enclosed_background(out2).any() and out2.shape == holey[12].shape


def test_fill_holes_is_label_aware():
    lab = np.zeros((30, 30), np.uint8)
    ring = _disc(lab.shape, (15, 15), 10) & ~_disc(lab.shape, (15, 15), 5)
    lab[ring] = 1
    lab[ring & (np.indices(lab.shape)[1] >= 19)] = 2  # the right part of the ring is label 2
    inner = _disc(lab.shape, (15, 15), 5)
    # Only label 1: its mask alone does not enclose the hole, so nothing changes.
    np.testing.assert_array_equal(fill_holes(lab, label=1), lab)
    out = fill_holes(lab)  # all labels: the hole enclosed by 1 and 2 takes the rim majority, 1
    assert np.all(out[inner] == 1) and not _enclosed_background(out).any()
    two = np.zeros((20, 20), np.uint8)
    two[2:9, 2:9] = 1
    two[4:7, 4:7] = 0
    two[11:18, 11:18] = 2
    two[14, 14] = 0
    out = fill_holes(two, label=2)
    assert out[14, 14] == 2 and np.all(out[4:7, 4:7] == 0)


def test_fill_holes_in_a_hollow_sphere():
    _, solid = make_blob_volume((20, 20, 20))
    hollow = solid.copy()
    hollow[ndimage.binary_erosion(solid, iterations=3)] = 0
    np.testing.assert_array_equal(fill_holes(hollow), solid)


def test_remove_small_components_by_size_and_label():
    lab = np.zeros((16, 40, 40), np.uint8)
    lab[4:12, 5:25, 5:25] = 1
    specks = {1: (2, 30, 30), 3: (2, 35, 5), 5: (14, 3, 33)}
    for size, (z, y, x) in specks.items():
        lab[z, y, x : x + size] = 2 if size == 5 else 1
    out = remove_small_components(lab, min_size=4)
    assert out[2, 30, 30] == 0 and np.all(out[2, 35, 5:8] == 0)
    assert np.all(out[14, 3, 33:38] == 2)  # 5 voxels: kept
    assert np.all(out[4:12, 5:25, 5:25] == 1)
    out = remove_small_components(lab, min_size=6, label=2)
    assert np.all(out[14, 3, 33:38] == 0) and out[2, 30, 30] == 1


def test_majority_smoothing_removes_salt_and_pepper_and_keeps_shapes():
    rng = np.random.default_rng(1)
    _, truth = make_blob_volume((24, 32, 40))
    noisy = truth.copy()
    flip = rng.random(truth.shape) < 0.05
    noisy[flip] = 1 - noisy[flip]
    out = smooth(noisy, radius=1, method="majority")
    assert (out != truth).sum() < 0.15 * (noisy != truth).sum()
    assert (smooth(truth, radius=1) != truth).sum() < 0.04 * truth.sum()  # a clean shape barely moves
    # Only label 2 may change: voxels of other labels never turn into each other.
    multi = noisy.copy()
    multi[:, :, 20:][multi[:, :, 20:] == 1] = 2
    out = smooth(multi, radius=1, label=2)
    changed = out != multi
    assert changed.any() and np.all((out[changed] == 2) | (multi[changed] == 2))


def test_open_close_removes_spur_fills_notch_and_spares_border():
    lab = np.zeros((40, 40), np.uint8)
    lab[10:30, 0:25] = 1  # touches the left border
    lab[19, 25:35] = 1  # a one-pixel spur
    lab[20, 15:25] = 0  # a one-pixel notch from the right side
    out = smooth(lab, radius=1, method="open-close")
    assert not out[19, 27:35].any()
    assert np.all(out[20, 15:23] == 1)  # filled up to its mouth, whose corners the ball rounds
    assert np.all(out[11:29, 0] == 1)  # not eroded at the array border
    with pytest.raises(ValueError):
        smooth(lab, method="gaussian")


def test_copy_slice_from_neighbour():
    _, lab = make_blob_volume((10, 12, 14))
    new = copy_slice(lab, axis=2, source=4, target=5)
    np.testing.assert_array_equal(new, lab[:, :, 4])
    assert not np.array_equal(lab[:, :, 5], lab[:, :, 4])  # the input is left as it was
    multi = lab.copy()
    multi[:, :6, :] *= 2  # labels 2 (top) and 1 (bottom)
    multi[:, :, 5] = np.where(multi[:, :, 5] == 1, 3, multi[:, :, 5])  # target: its label 1 is 3 instead
    new = copy_slice(multi, axis=2, source=4, target=5, label=2)
    np.testing.assert_array_equal(new == 2, multi[:, :, 4] == 2)  # label 2 now as in the source
    np.testing.assert_array_equal(new == 3, multi[:, :, 5] == 3)  # the other label untouched


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_interpolating_between_identical_slices_reproduces_them(axis):
    rng = np.random.default_rng(axis)
    vol = np.zeros((20, 20, 20), np.uint8)
    plane = ndimage.binary_opening(rng.random((20, 20)) < 0.6, iterations=1).astype(np.uint8)
    plane[plane.astype(bool) & (np.indices((20, 20))[0] > 12)] = 2
    vol[slice_key(axis, 3)] = plane
    vol[slice_key(axis, 12)] = plane
    between = interpolate_slices(vol, axis, 12, 3)
    assert between.shape[axis] == 8
    out = vol.copy()
    out[between_key(axis, 3, 12)] = between
    for k in range(3, 13):
        np.testing.assert_array_equal(out[slice_key(axis, k)], plane)
    np.testing.assert_array_equal(out[slice_key(axis, 13)], 0)
    assert interpolate_slices(vol, axis, 3, 4).shape[axis] == 0  # neighbours: nothing in between


def test_halfway_between_two_discs_has_the_mean_radius():
    r1, r2 = 6, 14
    vol = np.zeros((11, 40, 40), np.uint8)
    vol[0] = _disc((40, 40), (20, 20), r1)
    vol[10] = _disc((40, 40), (20, 20), r2)
    out = vol.copy()
    out[1:10] = interpolate_slices(vol, 0, 0, 10)
    radii = np.sqrt(out.sum(axis=(1, 2)) / np.pi)
    assert abs(radii[5] - (r1 + r2) / 2) < 0.75
    assert np.all(np.diff(radii) >= 0) and radii[1] > r1 and radii[9] < r2
    # Distances are scale-free: an isotropic in-plane spacing changes nothing.
    np.testing.assert_array_equal(interpolate_slices(vol, 0, 0, 10, sampling=(2.0, 2.0)), out[1:10])


def test_a_label_on_one_end_only_shrinks_away():
    vol = np.zeros((9, 30, 30), np.uint8)
    vol[0] = _disc((30, 30), (15, 15), 10)
    vol[0][_disc((30, 30), (15, 15), 3)] = 2
    vol[8] = _disc((30, 30), (15, 15), 8) * 2
    out = vol.copy()
    out[1:8] = interpolate_slices(vol, 0, 0, 8)
    ones = (out == 1).sum(axis=(1, 2))
    assert np.all(np.diff(ones[:8]) < 0) and ones[7] < ones[0] / 4
    twos = (out == 2).sum(axis=(1, 2))
    assert np.all(np.diff(twos[1:9]) > 0)  # label 2 grows from its small core to the big disc


def test_region_changes_feed_a_setter_that_reproduces_the_edit():
    _, lab = make_blob_volume((12, 16, 20))
    new_slice = fill_holes(remove_small_components(lab[5], 1000))
    idx, values = region_changes(lab, new_slice, slice_key(0, 5))
    target = lab.copy()
    target[idx] = values
    np.testing.assert_array_equal(target[5], new_slice)
    np.testing.assert_array_equal(np.delete(target, 5, 0), np.delete(lab, 5, 0))
    assert len(values) == int((lab[5] != new_slice).sum())
    block = lab[2:9, :, 4:].copy()
    block[0, 0, 0] = 7
    idx, values = region_changes(lab, block, (slice(2, 9), slice(None), slice(4, None)))
    assert [int(i[0]) for i in idx] == [2, 0, 4] and list(values) == [7]
    idx, values = region_changes(lab, lab)
    assert values.size == 0 and all(i.size == 0 for i in idx)


def test_weak_labels_fill_gaps_between_corrected_slices_of_each_axis():
    zz, yy, xx = np.indices((40, 40, 40))
    ball = (((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) <= 14**2).astype(np.uint8)
    labels = np.zeros_like(ball)
    for axis, index in [(0, 12), (0, 20), (0, 28), (2, 20), (2, 34)]:
        labels[slice_key(axis, index)] = ball[slice_key(axis, index)]  # the corrected slices are right
    weak, covered = weak_labels(labels, [(0, 12), (0, 20), (0, 28), (2, 20), (2, 34)], (1.0, 1.0, 1.0))
    assert covered[13:20].any() and covered[21:28].any()  # both axial gaps
    assert not covered[:12, :, :20].any() and not covered[29:, :, :20].any()  # nothing outside the gaps
    assert not covered[20].any() and not covered[:, :, 20].any()  # corrected slices keep their own labels
    assert covered[:12, :, 21:34].all()  # the sagittal gap, where no axial gap lies
    agreement = dice(weak[covered] == 1, ball[covered] == 1)
    assert agreement > 0.9  # the interpolated shapes are close to the true ones
    far, far_covered = weak_labels(labels, [(0, 2), (0, 38)], (1.0, 1.0, 1.0), max_gap=20)
    assert not far_covered.any() and not far.any()  # a 35-slice gap is a guess: left out


def test_weak_labels_use_the_in_plane_spacing():
    vol = np.zeros((11, 40, 20), np.uint8)
    vol[0, 10:30, 5:15] = 1
    vol[10, 10:30, 5:15] = 1
    weak, covered = weak_labels(vol, [(0, 0), (0, 10)], (2.0, 0.5, 1.0))
    assert covered[1:10].all() and (weak[1:10] == vol[0]).all()  # identical ends: reproduced on any spacing
