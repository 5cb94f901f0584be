"""model_grid's reorientation equals SimpleITK's DICOMOrient without allocating the scan's size."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.io.resample import model_grid


def _random_geometry(rng: np.random.Generator) -> Geometry:
    signed = np.zeros((3, 3))
    for i, p in enumerate(rng.permutation(3)):
        signed[p, i] = rng.choice([-1.0, 1.0])
    a = rng.uniform(-0.4, 0.4)
    tilt = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return Geometry(
        size=tuple(int(v) for v in rng.integers(2, 9, 3)),
        spacing=tuple(float(v) for v in rng.uniform(0.5, 3.0, 3)),
        origin=tuple(float(v) for v in rng.uniform(-50, 50, 3)),
        direction=tuple(float(v) for v in (tilt @ signed).ravel()),
    )


@pytest.mark.parametrize("code", ["LPS", "RAS", "RAI", "SPL", "ASL", "IRP"])
def test_orientation_matches_dicomorient(code: str) -> None:
    rng = np.random.default_rng(abs(hash(code)) % 1000)
    for _ in range(8):
        g = _random_geometry(rng)
        ref = Geometry.from_image(sitk.DICOMOrient(g.apply_to(sitk.Image(list(g.size), sitk.sitkUInt8)), code))
        ours = model_grid(g, None, code)
        assert ours.size == ref.size
        np.testing.assert_allclose(ours.spacing, ref.spacing)
        np.testing.assert_allclose(ours.origin, ref.origin, atol=1e-6)
        np.testing.assert_allclose(ours.direction, ref.direction, atol=1e-7)


def test_huge_grid_costs_nothing() -> None:
    huge = Geometry(
        size=(4096, 4096, 3000), spacing=(0.2, 0.2, 0.2), origin=(0.0, 0.0, 0.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    )
    grid = model_grid(huge, (0.8, 0.8, 0.8), "LPS")  # 50 G voxels: only possible without allocating
    assert grid.size == (1024, 1024, 750) and grid.orientation == "LPS"
