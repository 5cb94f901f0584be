"""Boundary extraction: exact surfaces, agreement with scipy's erosion, per-class channels."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from napari_freqseg.training.boundary import boundary_map, class_boundaries, label_change


def _cube(shape=(16, 16, 16), lo=5, side=6) -> torch.Tensor:
    labels = torch.zeros((1, *shape), dtype=torch.int64)
    labels[0, lo : lo + side, lo : lo + side, lo : lo + side] = 1
    return labels


def test_cube_boundary_is_exactly_its_surface():
    labels = _cube()
    b = boundary_map(labels)
    expected = torch.zeros_like(b)
    expected[0, 5:11, 5:11, 5:11] = True
    expected[0, 6:10, 6:10, 6:10] = False
    assert torch.equal(b, expected)
    assert int(b.sum()) == 6**3 - 4**3


def test_background_side_is_the_outer_face_shell():
    labels = _cube()
    outer = class_boundaries(labels, 2)[0, 0]
    cube = labels[0].numpy().astype(bool)
    shell = ndimage.binary_dilation(cube) & ~cube  # 6-connected dilation
    assert np.array_equal(outer.numpy(), shell)
    assert torch.equal(boundary_map(labels, include_background=True)[0], outer | boundary_map(labels)[0])


def test_multiclass_matches_scipy_erosion_and_ignores_volume_border():
    rng = np.random.default_rng(3)
    labels = ndimage.median_filter(rng.integers(0, 3, (2, 20, 18, 22)), size=(1, 5, 5, 5))
    t = torch.from_numpy(labels).long()
    cb = class_boundaries(t, 3)
    for n in range(2):
        for c in range(3):
            mask = labels[n] == c
            expected = mask & ~ndimage.binary_erosion(mask, border_value=1)
            assert np.array_equal(cb[n, c].numpy(), expected), (n, c)
    assert torch.equal(cb.any(dim=1), label_change(t))


def test_object_touching_the_border_has_no_surface_there():
    labels = torch.zeros((1, 8, 8, 8), dtype=torch.int64)
    labels[0, :4] = 1  # half-space slab: only the z = 3 face is a real interface
    b = boundary_map(labels)[0]
    assert torch.equal(b.nonzero()[:, 0].unique(), torch.tensor([3]))
    assert int(b.sum()) == 64
