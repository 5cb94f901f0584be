"""Copy-paste: pasted regions and labels kept exactly, complementary masks, box samplers."""

from __future__ import annotations

import math

import torch

from napari_freqseg.training.boundary import boundary_map
from napari_freqseg.training.copypaste import (
    Cuboid,
    bidirectional_paste,
    boundary_cuboids,
    centred_cuboid,
    cover_cuboid,
    cuboid_masks,
    cutmix_cuboids,
    fraction_cuboids,
)

SHAPE = (16, 24, 20)


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_l = torch.randn((2, 1, *SHAPE), generator=g)
    x_u = torch.randn((2, 1, *SHAPE), generator=g) + 10  # distinguishable intensities
    y_l = torch.randint(0, 3, (2, *SHAPE), generator=g)
    y_u = torch.randint(0, 3, (2, *SHAPE), generator=g) + 3  # distinguishable labels
    return x_l, y_l, x_u, y_u


def test_bidirectional_paste_keeps_pasted_region_and_labels_exactly():
    x_l, y_l, x_u, y_u = _pair()
    g = torch.Generator().manual_seed(1)
    boxes = fraction_cuboids(2, SHAPE, 2 / 3, g)
    mask = cuboid_masks(boxes, SHAPE)
    inward, outward = bidirectional_paste(x_l, y_l, x_u, y_u, mask)
    for i, box in enumerate(boxes):
        region = (i, slice(None), *box.slices)
        assert torch.equal(inward.image[region], x_u[region])
        assert torch.equal(inward.label[(i, *box.slices)], y_u[(i, *box.slices)])
        assert torch.equal(outward.image[region], x_l[region])
        assert torch.equal(outward.label[(i, *box.slices)], y_l[(i, *box.slices)])
    m = mask.unsqueeze(1)
    assert torch.equal(inward.image[~m], x_l[~m]) and torch.equal(outward.image[~m], x_u[~m])
    assert torch.equal(inward.label[~mask], y_l[~mask]) and torch.equal(outward.label[~mask], y_u[~mask])
    # the two mixed volumes' label origins are complementary, and every voxel's label matches its source
    assert torch.equal(inward.from_labeled, ~outward.from_labeled)
    assert torch.equal(inward.from_labeled, inward.label < 3)
    assert torch.equal(outward.from_labeled, outward.label < 3)


def test_fraction_cuboid_size_and_bounds():
    g = torch.Generator().manual_seed(0)
    for c in fraction_cuboids(20, SHAPE, 2 / 3, g):
        assert c.size == (11, 16, 13)
        assert all(0 <= s and s + n <= d for s, n, d in zip(c.start, c.size, SHAPE))


def test_cutmix_cuboids_volume_and_aspect_within_limits():
    g = torch.Generator().manual_seed(0)
    total = math.prod(SHAPE)
    for c in cutmix_cuboids(200, SHAPE, g):
        assert all(0 <= s and s + n <= d for s, n, d in zip(c.start, c.size, SHAPE))
        assert math.prod(c.size) <= 0.4 * total * 1.5
        assert max(c.size) / min(c.size) <= (1 / 0.3) * 1.5 + 1
        assert cuboid_masks([c], SHAPE).sum() == math.prod(c.size)


def test_centred_cuboid_is_shifted_inside():
    c = centred_cuboid((0, 23, 10), (8, 8, 8), SHAPE)
    assert c == Cuboid((0, 16, 6), (8, 8, 8))


def test_boundary_cuboid_contains_both_boundary_kinds():
    labels_paste = torch.zeros((1, *SHAPE), dtype=torch.int64)
    labels_paste[0, 2:6, 2:8, 2:8] = 1  # small object in a corner
    labels_keep = torch.zeros((1, *SHAPE), dtype=torch.int64)
    labels_keep[0, 4:14, 4:20, 4:16] = 1  # large object
    bp, bk = boundary_map(labels_paste), boundary_map(labels_keep)
    g = torch.Generator().manual_seed(0)
    (box,) = boundary_cuboids(bp, bk, 0.5, g, n_candidates=8)
    m = cuboid_masks([box], SHAPE)
    assert int((bp & m).sum()) > 0  # pasted-volume boundary inside the box
    assert int((bk & ~m).sum()) > 0  # receiving-volume boundary outside it


def test_cover_cuboid_is_the_bounding_box():
    region = torch.zeros(SHAPE, dtype=torch.bool)
    region[3, 4, 5] = region[9, 2, 11] = True
    assert cover_cuboid(region) == Cuboid((3, 2, 5), (7, 3, 7))
