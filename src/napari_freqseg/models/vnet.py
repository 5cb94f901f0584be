"""V-Net in the layout of the semi-supervised literature (UA-MT / SSL4MIS family).

Encoder stages of 1/2/3/3/3 convolution blocks with n_filters·2^k channels, strided-convolution
down-sampling, transposed-convolution up-sampling, additive skip connections, dropout at the
bottleneck. `forward(x, return_features=True)` also returns the last decoder features (the input
of the 1×1×1 classifier), which boundary alignment and uncertainty use.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance", "group", "none")


def norm_layer(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """3D normalisation layer by name (`groups`: at most this many groups for group norm)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(num_groups=min(groups, channels), num_channels=channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r} (choose from {', '.join(NORMS)})")


class ConvBlock(nn.Sequential):
    """`n_convs` × (3×3×3 conv, norm, ReLU)."""

    def __init__(self, n_convs: int, in_ch: int, out_ch: int, norm: str, groups: int = 8) -> None:
        layers: list[nn.Module] = []
        for i in range(n_convs):
            conv = nn.Conv3d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1)
            layers += [conv, norm_layer(norm, out_ch, groups), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Down(nn.Sequential):
    """2×2×2 stride-2 convolution that doubles channels."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, groups: int = 8) -> None:
        super().__init__(nn.Conv3d(in_ch, out_ch, 2, stride=2), norm_layer(norm, out_ch, groups), nn.ReLU(inplace=True))


class Up(nn.Sequential):
    """2×2×2 stride-2 transposed convolution that halves channels."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, groups: int = 8) -> None:
        super().__init__(nn.ConvTranspose3d(in_ch, out_ch, 2, stride=2), norm_layer(norm, out_ch, groups), nn.ReLU(inplace=True))


class VNet(nn.Module):
    """V-Net for (N, C, D, H, W) inputs whose spatial sizes are multiples of 16."""

    #: Spatial sizes must be divisible by this (four stride-2 stages).
    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        n_filters: int = 16,
        normalization: str = "batch",
        dropout: float = 0.5,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        f = n_filters
        n, g = normalization, norm_groups
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.feature_channels = f
        self.block1 = ConvBlock(1, in_channels, f, n, g)
        self.down1 = Down(f, 2 * f, n, g)
        self.block2 = ConvBlock(2, 2 * f, 2 * f, n, g)
        self.down2 = Down(2 * f, 4 * f, n, g)
        self.block3 = ConvBlock(3, 4 * f, 4 * f, n, g)
        self.down3 = Down(4 * f, 8 * f, n, g)
        self.block4 = ConvBlock(3, 8 * f, 8 * f, n, g)
        self.down4 = Down(8 * f, 16 * f, n, g)
        self.block5 = ConvBlock(3, 16 * f, 16 * f, n, g)
        self.up5 = Up(16 * f, 8 * f, n, g)
        self.block6 = ConvBlock(3, 8 * f, 8 * f, n, g)
        self.up6 = Up(8 * f, 4 * f, n, g)
        self.block7 = ConvBlock(3, 4 * f, 4 * f, n, g)
        self.up7 = Up(4 * f, 2 * f, n, g)
        self.block8 = ConvBlock(2, 2 * f, 2 * f, n, g)
        self.up8 = Up(2 * f, f, n, g)
        self.block9 = ConvBlock(1, f, f, n, g)
        self.dropout = nn.Dropout3d(p=dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv3d(f, n_classes, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x1 = self.block1(x)
        x2 = self.block2(self.down1(x1))
        x3 = self.block3(self.down2(x2))
        x4 = self.block4(self.down3(x3))
        x5 = self.dropout(self.block5(self.down4(x4)))
        y = self.block6(self.up5(x5) + x4)
        y = self.block7(self.up6(y) + x3)
        y = self.block8(self.up7(y) + x2)
        features = self.block9(self.up8(y) + x1)
        logits = self.classifier(self.dropout(features))
        return (logits, features) if return_features else logits
