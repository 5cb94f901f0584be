"""Test helpers importable by name from any test module (`from synthetic import ...`): tiny
synthetic volumes and networks whose outputs are known exactly. Fixtures live in conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_freqseg.models.modelfile import ModelMeta

REPO = Path(__file__).resolve().parents[1]

OBLIQUE_DIRECTION = tuple(
    np.round(np.array([[0.8660254, -0.5, 0.0], [0.5, 0.8660254, 0.0], [0.0, 0.0, 1.0]]).ravel(), 7).tolist()
)


def make_blob_volume(shape: tuple[int, int, int] = (24, 32, 40), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth float32 volume with a bright ellipsoid and its uint8 label."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    label = ((zz / 0.5) ** 2 + (yy / 0.45) ** 2 + (xx / 0.4) ** 2 <= 1).astype(np.uint8)
    image = (100 + 80 * label + 10 * rng.standard_normal(shape)).astype(np.float32)
    return image, label


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


def tiny_vnet_meta(**overrides) -> ModelMeta:
    fields = dict(name="tiny-vnet", architecture="vnet", arch_args={"n_filters": 2, "normalization": "batch"},
                  classes=["background", "blob"], spacing=None, orientation=None, patch_size=[16, 16, 16])  # fmt: skip
    fields.update(overrides)
    return ModelMeta(**fields)
