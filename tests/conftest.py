"""Shared fixtures: tiny synthetic volumes and the optional shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import OBLIQUE_DIRECTION, REPO, ThresholdNet, make_blob_volume, threshold_meta

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.models.modelfile import ARCHITECTURES, save_model

SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip where it is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def blob() -> tuple[np.ndarray, np.ndarray]:
    return make_blob_volume()


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


@pytest.fixture
def single_thread():
    """One torch thread for the test: on a shared 2-core machine two OpenMP threads wait on each
    other for whole scheduler slices, making tiny convolutions 10-100× slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def threshold_model(monkeypatch, tmp_path) -> Path:
    """A model file of ThresholdNet, registered as architecture 'threshold' for the test."""
    monkeypatch.setitem(ARCHITECTURES, "threshold", ThresholdNet)
    return save_model(tmp_path / "models" / "threshold.safetensors", ThresholdNet(threshold=2.0), threshold_meta())


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """One real Orthanc with DICOMweb for the session's PACS tests (see orthanc_server.py)."""
    from orthanc_server import Orthanc

    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()
