"""A tiny segmentation network trained on synthetic blobs, for the frequency tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ToyNet(nn.Module):
    """Two 3D convolutions with BatchNorm and dropout: enough to learn intensity-based blobs."""

    def __init__(self, ndim: int = 3) -> None:
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
        drop = nn.Dropout3d if ndim == 3 else nn.Dropout2d
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), norm(4), nn.ReLU(), drop(0.2), conv(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def blob_batch(n: int, shape: tuple[int, ...] = (16, 16, 16), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n raw-intensity blob volumes (N, 1, ...) with labels (N, ...), varying contrast per sample."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    xs, ys = [], []
    for _ in range(n):
        centre = rng.uniform(-0.3, 0.3, len(shape))
        radii = rng.uniform(0.3, 0.5, len(shape))
        label = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1
        image = 2.0 * label * rng.uniform(0.8, 1.2) + 0.6 * rng.standard_normal(shape)
        xs.append(image - image.mean())
        ys.append(label)
    return torch.from_numpy(np.stack(xs)[:, None]).float(), torch.from_numpy(np.stack(ys)).long()


def train_toy(ndim: int = 3, iterations: int = 40) -> ToyNet:
    torch.manual_seed(0)
    model = ToyNet(ndim)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    shape = (12, 12, 12) if ndim == 3 else (24, 24)
    for it in range(iterations):
        if ndim == 3:
            x, y = blob_batch(4, shape, seed=it % 8)
        else:
            x3, y3 = blob_batch(4, (4, 24, 24), seed=it % 8)
            x, y = x3[:, :, 2], y3[:, 2]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.train()


class FilterNet(nn.Module):
    """A fixed linear filter h = k * x read as two-class logits (-h, h): its reliance on each
    frequency band is that of the filter, known in advance (blur: low bands, Laplacian: high)."""

    size_divisor = 1

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 5, padding=2, bias=False)
        with torch.no_grad():
            if kind == "blur":
                self.conv.weight.fill_(1.0 / 125)
            else:
                k = torch.zeros(5, 5, 5)
                k[2, 2, 2] = 6.0
                for d in ((1, 2, 2), (3, 2, 2), (2, 1, 2), (2, 3, 2), (2, 2, 1), (2, 2, 3)):
                    k[d] = -1.0
                self.conv.weight.copy_(k[None, None])
        self.conv.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return torch.cat([-h, h], dim=1)
