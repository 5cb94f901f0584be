"""Gradients of a segmentation loss with respect to the network input, without side effects.

L-AAE and F-ASE only need dL/dx. Computing it here never changes the model: it runs in eval mode
(BatchNorm uses and keeps its running statistics, dropout is off, so samples stay independent and
each one's gradient is its own), every module's train/eval flag is restored afterwards, and
`torch.autograd.grad` is taken with respect to the input only, so no parameter `.grad` is written.
Large volumes are processed in tiles, one tile's graph in memory at a time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CancelledError
from .bands import spatial_ndim

#: loss_fn(logits (N, K, ...), target (N, ...) int64, mask (N, ...) float or None) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
Progress = Callable[[int, int, str], None]


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Voxel-wise cross-entropy averaged over the voxels where `mask` (0..1 weights) is on."""
    ce = F.cross_entropy(logits, target.long(), reduction="none")
    if mask is None:
        return ce.mean()
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def confident_pseudo_labels(probs: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher pseudo-labels (argmax) and the mask of voxels whose top probability reaches `threshold`."""
    confidence, labels = probs.max(dim=1)
    return labels, (confidence >= threshold).to(probs.dtype)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode and give every module back its own train/eval flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _tile_grid(shape: tuple[int, ...], tile: int, divisor: int) -> tuple[tuple[int, ...], list[tuple[slice, ...]]]:
    """Padded shape and non-overlapping tiles (each a multiple of `divisor`, at most ~`tile`).

    Tiles span at least two divisor steps when divisor > 1, so that a network's coarsest level
    keeps more than one voxel (instance normalisation needs it).
    """
    padded, sizes = [], []
    for n in shape:
        p = max(math.ceil(n / divisor) * divisor, 2 * divisor if divisor > 1 else 1)
        count = math.ceil(p / tile)
        size = math.ceil(math.ceil(p / count) / divisor) * divisor
        padded.append(size * count)
        sizes.append((size, count))
    grids = [[slice(i * s, (i + 1) * s) for i in range(c)] for s, c in sizes]
    tiles = [()]
    for axis in grids:
        tiles = [t + (s,) for t in tiles for s in axis]
    return tuple(padded), tiles


def _pad_to(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    nd = len(shape)
    pad = []
    for n, p in zip(reversed(x.shape[-nd:]), reversed(shape)):
        pad += [0, p - n]
    return F.pad(x, pad) if any(pad) else x


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn = masked_cross_entropy,
    mask: torch.Tensor | None = None,
    *,
    tile: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """dL/dx for a batch, in eval mode, with no effect on the model's parameters or statistics.

    With `tile`, the spatial axes are padded to the model's `size_divisor` and cut into
    non-overlapping tiles; the loss of each tile is computed on its own (padding masked out).
    """
    with eval_mode(model), torch.enable_grad():
        if tile is None:
            x_in = x.detach().requires_grad_(True)
            loss = loss_fn(model(x_in), target, mask)
            return torch.autograd.grad(loss, x_in)[0]
        nd = spatial_ndim(x)
        shape = tuple(x.shape[-nd:])
        divisor = int(getattr(model, "size_divisor", 1))
        padded, tiles = _tile_grid(shape, tile, divisor)
        xp = _pad_to(x.detach(), padded)
        tp = _pad_to(target, padded)
        valid = _pad_to(torch.ones_like(target, dtype=x.dtype) if mask is None else mask.to(x.dtype), padded)
        grad = torch.zeros_like(xp)
        for i, window in enumerate(tiles):
            if cancelled is not None and cancelled():
                raise CancelledError("cancelled")
            sl = (Ellipsis, *window)
            if valid[sl].sum() == 0:
                continue
            x_in = xp[sl].clone().requires_grad_(True)
            loss = loss_fn(model(x_in), tp[sl], valid[sl])
            grad[sl] = torch.autograd.grad(loss, x_in)[0]
            if progress is not None:
                progress(i + 1, len(tiles), "gradient")
        return grad[(Ellipsis, *[slice(0, n) for n in shape])]


@torch.no_grad()
def tiled_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tile: int = 96,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Model logits over a whole volume in non-overlapping tiles, in eval mode (same tiling as
    `input_gradient`, so a prediction and its gradient see the same windows)."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    padded, tiles = _tile_grid(shape, tile, int(getattr(model, "size_divisor", 1)))
    xp = _pad_to(x, padded)
    out: torch.Tensor | None = None
    with eval_mode(model):
        for i, window in enumerate(tiles):
            if cancelled is not None and cancelled():
                raise CancelledError("cancelled")
            logits = model(xp[(Ellipsis, *window)])
            if out is None:
                out = torch.zeros(x.shape[0], logits.shape[1], *padded, dtype=logits.dtype, device=logits.device)
            out[(Ellipsis, *window)] = logits
            if progress is not None:
                progress(i + 1, len(tiles), "prediction")
    return out[(Ellipsis, *[slice(0, n) for n in shape])]
