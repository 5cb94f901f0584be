"""Segmentation losses shared by the components: cross-entropy and soft Dice, optionally masked."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masked_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean voxel cross-entropy; with `mask` (N, D, H, W) in [0, 1], the mask-weighted mean."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    if mask is None:
        return ce.mean()
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 - soft Dice of the foreground classes, over the whole batch (as in V-Net / UA-MT)."""
    probs = torch.softmax(logits.float(), dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()[:, 1:]
    if mask is not None:
        probs = probs * mask[:, None]
        onehot = onehot * mask[:, None]
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return (1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)).mean()


def ce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, Dice loss), each already multiplied by its weight."""
    return ce_weight * masked_ce(logits, target, mask), dice_weight * soft_dice_loss(logits, target, mask)


def sigmoid_rampup(current: float, length: float) -> float:
    """exp(-5 (1 - t)^2) for t = current / length in [0, 1] (Laine & Aila; mean teacher)."""
    if length <= 0:
        return 1.0
    t = min(max(current / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
