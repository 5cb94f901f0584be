"""Tiny synthetic batches and a fixed teacher for component tests."""

from __future__ import annotations

import torch
from torch import nn

from napari_freqseg.models.vnet import VNet
from napari_freqseg.training.components import StepContext

SHAPE = (16, 32, 32)


def blobs(n: int, seed: int, shape: tuple[int, int, int] = SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, D, H, W) images with one bright ellipsoid each, and their (N, D, H, W) labels."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    labels = torch.zeros((n, *shape), dtype=torch.int64)
    for i in range(n):
        centre = (torch.rand(3, generator=g) - 0.5) * 0.6
        radii = 0.35 + 0.2 * torch.rand(3, generator=g)
        r = sum(((gr - c) / a) ** 2 for gr, c, a in zip(grids, centre, radii))
        labels[i] = (r <= 1).long()
    images = labels[:, None].float() * 2 - 1 + 0.3 * torch.randn((n, 1, *shape), generator=g)
    return images, labels


class FixedTeacher(nn.Module):
    """A stand-in teacher that returns confident logits of given label maps (plus an ignored input)."""

    def __init__(self, labels: torch.Tensor, n_classes: int = 2, scale: float = 4.0) -> None:
        super().__init__()
        onehot = nn.functional.one_hot(labels, n_classes).movedim(-1, 1).float()
        self.register_buffer("logits", scale * (2 * onehot - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[torch.arange(x.shape[0]) % self.logits.shape[0]]  # batches of several views repeat the maps


def tiny_vnet(seed: int = 0, n_filters: int = 2) -> VNet:
    torch.manual_seed(seed)
    return VNet(n_filters=n_filters, normalization="instance", dropout=0.0)


def context(
    student: nn.Module, teacher: nn.Module | None, x_l, y_l, x_u, iteration: int = 100, total: int = 100, **extra
) -> StepContext:
    return StepContext(
        iteration=iteration,
        total_iterations=total,
        student=student,
        teacher=teacher,
        n_classes=2,
        x_l=x_l,
        y_l=y_l,
        x_u=x_u,
        **extra,
    )


class IntensityTeacher(nn.Module):
    """A voxel-wise stand-in teacher: foreground where the normalised intensity is positive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-8 * x, 8 * x], dim=1)
