"""Strong intensity augmentation of normalised 3D patches (the student's view in MiDSS/UST-RUN).

The released 2D code uses PIL brightness, contrast and Gaussian blur; on normalised volumes we use
their 3D analogues: contrast around the sample mean, a brightness shift in units of the sample's
standard deviation, and a separable Gaussian blur applied with probability 1/2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur3d(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, D, H, W) with `sigma` voxels (replicate borders)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, c = x.shape[:2]
    y = x.reshape(n * c, 1, *x.shape[2:])
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(k)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.reshape(x.shape)


def strong_intensity(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    contrast: tuple[float, float] = (0.5, 1.5),
    brightness: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_probability: float = 0.5,
) -> torch.Tensor:
    """Per sample: contrast c ~ U(contrast), shift b ~ U(-brightness, brightness)·std, and with
    `blur_probability` a Gaussian blur of sigma ~ U(blur_sigma)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator).to(x.device, x.dtype)
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    view = (n,) + (1,) * (x.ndim - 1)
    c = (contrast[0] + (contrast[1] - contrast[0]) * u[:, 0]).view(view)
    b = ((2 * u[:, 1] - 1) * brightness).view(view)
    out = mean + c * (x - mean) + b * std
    blurred = []
    for i in range(n):
        if float(u[i, 2]) < blur_probability:
            sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * float(u[i, 3])
            blurred.append(gaussian_blur3d(out[i : i + 1], sigma))
        else:
            blurred.append(out[i : i + 1])
    return torch.cat(blurred)
