"""Shared fixtures: tiny synthetic volumes and the optional shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_freqseg.io.geometry import Geometry
from napari_freqseg.models.modelfile import ARCHITECTURES, ModelMeta, save_model

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
# ---- models for inference tests ------------------------------------------------------------------
@pytest.fixture
def single_thread():
    """One torch thread for the test: on a shared 2-core machine two OpenMP threads wait on each
    other for whole scheduler slices, making tiny convolutions 10-100× slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

class ThresholdNet(nn.Module):
    """A per-voxel "network": foreground where the normalised intensity exceeds `threshold`.

    Its output is known exactly (a 1×1×1 convolution), so tests can predict every label.
    """

    size_divisor = 1
    feature_channels = 1

    def __init__(self, in_channels: int = 1, n_classes: int = 2, threshold: float = 2.0, steepness: float = 4.0) -> None:
        super().__init__()
        self.in_channels, self.n_classes = in_channels, n_classes
        self.conv = nn.Conv3d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-steepness, steepness]).view(2, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([steepness * threshold, -steepness * threshold]))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        logits = self.conv(x)
        return (logits, x) if return_features else logits


def threshold_meta(**overrides) -> ModelMeta:
    fields = dict(name="threshold", architecture="threshold", arch_args={"threshold": 2.0}, classes=["background", "blob"],
                  spacing=None, orientation=None, patch_size=[16, 16, 16], task="blob")  # fmt: skip
    fields.update(overrides)
    return ModelMeta(**fields)


@pytest.fixture
def threshold_model(monkeypatch, tmp_path) -> Path:
    """A model file of ThresholdNet, registered as architecture 'threshold' for the test."""
    monkeypatch.setitem(ARCHITECTURES, "threshold", ThresholdNet)
    return save_model(tmp_path / "models" / "threshold.safetensors", ThresholdNet(threshold=2.0), threshold_meta())


def tiny_vnet_meta(**overrides) -> ModelMeta:
    fields = dict(name="tiny-vnet", architecture="vnet", arch_args={"n_filters": 2, "normalization": "batch"},
                  classes=["background", "blob"], spacing=None, orientation=None, patch_size=[16, 16, 16])  # fmt: skip
    fields.update(overrides)
    return ModelMeta(**fields)
