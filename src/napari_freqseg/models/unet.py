"""3D U-Net (Çiçek et al., MICCAI 2016) behind the same interface as the V-Net.

Five levels of two 3×3×3 convolution blocks with n_filters·2^k channels, max-pool down-sampling,
transposed-convolution up-sampling, concatenated skip connections, dropout at the bottleneck and
before the classifier (so MC dropout works as with the V-Net). `forward(x, return_features=True)`
also returns the last decoder features, the input of the 1×1×1 classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from .vnet import ConvBlock, Up


class UNet3D(nn.Module):
    """3D U-Net for (N, C, D, H, W) inputs whose spatial sizes are multiples of 16."""

    #: Spatial sizes must be divisible by this (four 2× poolings).
    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        n_filters: int = 16,
        normalization: str = "instance",
        dropout: float = 0.5,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        f, n, g = n_filters, normalization, norm_groups
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.feature_channels = f
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for w in widths:
            self.encoders.append(ConvBlock(2, previous, w, n, g))
            previous = w
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList(Up(widths[k + 1], widths[k], n, g) for k in reversed(range(4)))
        self.decoders = nn.ModuleList(ConvBlock(2, 2 * widths[k], widths[k], n, g) for k in reversed(range(4)))
        self.dropout = nn.Dropout3d(p=dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv3d(f, n_classes, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for k, encoder in enumerate(self.encoders):
            x = encoder(x if k == 0 else self.pool(x))
            skips.append(x)
        y = self.dropout(skips.pop())
        for up, decoder in zip(self.ups, self.decoders):
            y = decoder(torch.cat([up(y), skips.pop()], dim=1))
        logits = self.classifier(self.dropout(y))
        return (logits, y) if return_features else logits
