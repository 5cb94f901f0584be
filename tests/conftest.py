"""Shared fixtures: tiny synthetic volumes and the optional shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_freqseg.io.geometry import Geometry

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip where it is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def make_blob_volume(shape: tuple[int, int, int] = (24, 32, 40), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth float32 volume with a bright ellipsoid and its uint8 label."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    label = ((zz / 0.5) ** 2 + (yy / 0.45) ** 2 + (xx / 0.4) ** 2 <= 1).astype(np.uint8)
    image = (100 + 80 * label + 10 * rng.standard_normal(shape)).astype(np.float32)
    return image, label


@pytest.fixture
def blob() -> tuple[np.ndarray, np.ndarray]:
    return make_blob_volume()


OBLIQUE_DIRECTION = tuple(
    np.round(
        np.array(
            [[0.8660254, -0.5, 0.0], [0.5, 0.8660254, 0.0], [0.0, 0.0, 1.0]]
        ).ravel(),
        7,
    ).tolist()
)


@pytest.fixture
def oblique_geometry() -> Geometry:
    """Anisotropic spacing, non-zero origin and a 30° rotated (oblique) direction."""
    return Geometry(size=(40, 32, 24), spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.25, 101.0), direction=OBLIQUE_DIRECTION)


@pytest.fixture
def notifications() -> list:
    """napari notifications (message, severity) dispatched during the test."""
    from napari.utils.notifications import notification_manager

    seen: list = []

    def keep(notification) -> None:
        seen.append(notification)

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)
