"""3D copy-paste mixing of labeled and unlabeled volumes (BCP, BFA, MiDSS Unified Copy-Paste).

A cuboid of one volume is pasted, in place, into another; images and label maps (ground truth or
pseudo-labels) are mixed with the same mask, so every voxel keeps the label of the volume it came
from. Bidirectional paste (BCP, Bai et al. CVPR 2023) makes two volumes from one labeled/unlabeled
pair: the unlabeled cuboid inside the labeled volume, and the labeled cuboid inside the unlabeled
one. The cuboid samplers differ by method: BCP's fixed-fraction cuboid, MiDSS's CutMix box, the
BFA box centred on a boundary, and UST-RUN's box covering two objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Cuboid:
    """An axis-aligned box of a (D, H, W) grid: first voxel and size per axis."""

    start: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size))  # type: ignore[return-value]


@dataclass
class Mixed:
    """A copy-pasted batch: images (N, 1, D, H, W), labels (N, D, H, W) and where they came from
    (`from_labeled` True on voxels taken from the labeled volume, whose label is ground truth)."""

    image: torch.Tensor
    label: torch.Tensor
    from_labeled: torch.Tensor


def cuboid_masks(cuboids: list[Cuboid], shape: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, D, H, W) bool masks, True inside each sample's cuboid."""
    masks = torch.zeros((len(cuboids), *shape), dtype=torch.bool, device=device)
    for i, c in enumerate(cuboids):
        masks[(i, *c.slices)] = True
    return masks


def centred_cuboid(centre: tuple[int, int, int], size: tuple[int, int, int], shape: tuple[int, int, int]) -> Cuboid:
    """A cuboid of `size` centred on `centre`, shifted to lie inside the grid."""
    size = tuple(min(n, s) for n, s in zip(size, shape))
    start = tuple(min(max(c - n // 2, 0), s - n) for c, n, s in zip(centre, size, shape))
    return Cuboid(start, size)  # type: ignore[arg-type]


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, max(1, high), (1,), generator=generator))


def fraction_cuboids(
    n: int, shape: tuple[int, int, int], fraction: float, generator: torch.Generator | None = None
) -> list[Cuboid]:
    """BCP's cuboid: `fraction` of each side (2/3 in BCP's 3D code) at a uniform random position."""
    size = tuple(max(1, round(fraction * s)) for s in shape)
    return [Cuboid(tuple(_randint(s - k + 1, generator) for s, k in zip(shape, size)), size) for _ in range(n)]  # type: ignore[misc]


def cutmix_cuboids(
    n: int,
    shape: tuple[int, int, int],
    generator: torch.Generator | None = None,
    volume_range: tuple[float, float] = (0.02, 0.4),
    max_aspect: float = 1 / 0.3,
) -> list[Cuboid]:
    """MiDSS's CutMix box in 3D: a volume fraction ~ U(volume_range) of the grid, side ratios within
    [1/max_aspect, max_aspect], at a random position inside the grid."""
    # 3D extension of the released 2D box (area in [0.02, 0.4], ratio in [0.3, 1/0.3]): log side
    # ratios drawn uniformly and centred, so the product of the sides is the drawn volume.
    out = []
    total = math.prod(shape)
    for _ in range(n):
        u = torch.rand(4, generator=generator)
        volume = (volume_range[0] + (volume_range[1] - volume_range[0]) * float(u[0])) * total
        logs = (u[1:] * 2 - 1) * math.log(max_aspect) / 2
        logs = logs - logs.mean()
        size = tuple(min(s, max(1, round(volume ** (1 / 3) * math.exp(float(e))))) for s, e in zip(shape, logs))
        start = tuple(_randint(s - k + 1, generator) for s, k in zip(shape, size))
        out.append(Cuboid(start, size))  # type: ignore[arg-type]
    return out


def boundary_cuboids(
    paste_boundary: torch.Tensor,
    keep_boundary: torch.Tensor,
    fraction: float,
    generator: torch.Generator | None = None,
    n_candidates: int = 4,
) -> list[Cuboid]:
    """BFA's cuboid: centred on a boundary voxel of the volume to paste from, chosen among
    `n_candidates` random boundary voxels so that the mixed volume holds as much as possible of both
    kinds of boundary: max over candidates of min(pasted boundary inside, kept boundary outside).

    `paste_boundary` / `keep_boundary`: (N, D, H, W) bool boundaries of the pasted (foreground) and
    the receiving (background) volume. A volume without boundary falls back to a random position.
    """
    # Our reading of BFA's "both kinds of boundary in one volume", on BCP's in-place cuboid.
    n, *grid = paste_boundary.shape
    shape = tuple(grid)
    size = tuple(max(1, round(fraction * s)) for s in shape)
    out = []
    for i in range(n):
        voxels = torch.nonzero(paste_boundary[i]).cpu()
        if len(voxels) == 0:
            out.extend(fraction_cuboids(1, shape, fraction, generator))  # type: ignore[arg-type]
            continue
        picks = torch.randint(0, len(voxels), (n_candidates,), generator=generator)
        best, best_score = None, -1
        for p in picks.tolist():
            c = centred_cuboid(tuple(voxels[p].tolist()), size, shape)  # type: ignore[arg-type]
            inside = int(paste_boundary[(i, *c.slices)].sum())
            outside = int(keep_boundary[i].sum()) - int(keep_boundary[(i, *c.slices)].sum())
            score = min(inside, outside)
            if score > best_score:
                best, best_score = c, score
        out.append(best)
    return out


def cover_cuboid(region: torch.Tensor, generator: torch.Generator | None = None) -> Cuboid:
    """UST-RUN's box for the hardest sample: the bounding box of a (D, H, W) bool region, or a
    random CutMix box where the region is empty."""
    voxels = torch.nonzero(region)
    if len(voxels) == 0:
        return cutmix_cuboids(1, tuple(region.shape), generator)[0]  # type: ignore[arg-type]
    lo = voxels.min(dim=0).values.tolist()
    hi = voxels.max(dim=0).values.tolist()
    return Cuboid(tuple(lo), tuple(h - l + 1 for l, h in zip(lo, hi)))  # type: ignore[arg-type]


def paste(background: torch.Tensor, foreground: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`foreground` inside `mask` (N, D, H, W), `background` elsewhere; images (N, C, D, H, W) or
    label maps (N, D, H, W)."""
    m = mask if background.ndim == mask.ndim else mask.unsqueeze(1)
    return torch.where(m, foreground, background)


def bidirectional_paste(
    x_l: torch.Tensor,
    y_l: torch.Tensor,
    x_u: torch.Tensor,
    y_u: torch.Tensor,
    mask_in: torch.Tensor,
    mask_out: torch.Tensor | None = None,
) -> tuple[Mixed, Mixed]:
    """BCP's two mixed volumes: `inward` = labeled volume with the unlabeled cuboid `mask_in`
    pasted in; `outward` = unlabeled volume with the labeled cuboid `mask_out` (default: the same
    cuboid) pasted in. `y_u` are the unlabeled pseudo-labels."""
    mask_out = mask_in if mask_out is None else mask_out
    inward = Mixed(paste(x_l, x_u, mask_in), paste(y_l, y_u, mask_in), ~mask_in)
    outward = Mixed(paste(x_u, x_l, mask_out), paste(y_u, y_l, mask_out), mask_out.clone())
    return inward, outward
