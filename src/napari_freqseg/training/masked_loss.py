"""Cross-entropy + Dice with a per-voxel weight, for mixed volumes whose pseudo-labeled part is
down-weighted or masked by confidence (BCP, MiDSS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_ce_dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, smooth: float = 1e-5) -> torch.Tensor:
    """Mean over voxels of weight·CE plus the weighted soft Dice loss averaged over all classes.

    logits (N, C, D, H, W), target (N, D, H, W) int64, weight (N, D, H, W) in [0, 1] or None.
    """
    w = torch.ones_like(target, dtype=logits.dtype) if weight is None else weight.to(logits.dtype)
    ce = (F.cross_entropy(logits, target, reduction="none") * w).mean()
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    wc = w.unsqueeze(1)
    dims = (0, 2, 3, 4)
    inter = (probs * onehot * wc).sum(dims)
    total = (probs * probs * wc).sum(dims) + (onehot * wc).sum(dims)
    dice = 1 - (2 * inter + smooth) / (total + smooth)
    return ce + dice.mean()
