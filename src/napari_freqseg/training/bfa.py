"""Boundary feature alignment (BFA; Guo, Wang et al., Pattern Recognition 2025), reconstructed.

The paper publishes no code. What it states: a 3D boundary extractor applied to ground-truth (GT)
and pseudo-label (PL) boundaries, copy-paste mixing that puts both kinds of boundary in one volume,
alignment of boundary features, a mean teacher. Our reconstruction, per step:

1. teacher pseudo-labels of the unlabeled batch (argmax, largest component per class as BCP);
2. BCP bidirectional copy-paste, with the cuboid centred on a boundary of the pasted volume and
   chosen so that the mixed volume holds both GT and PL boundaries (`copypaste.boundary_cuboids`);
3. on the student's output for the two mixed volumes: weighted CE + Dice (the PL part down-weighted,
   as BCP), a boundary head on the last decoder features trained on the mixed boundary map
   (weighted BCE + Dice), and, per class, the cosine distance between the mean decoder feature of
   PL-boundary voxels and that of GT-boundary voxels (GT side detached: GT boundaries are the anchor).

The boundary head is an extra module: `modules_to_train()` returns it, and the trainer must add its
parameters to the optimiser (and move it to the device); its weights are in `state_dict()`.
Every choice not in the paper is listed in docs/methods.md ("Boundary feature alignment").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .boundary import class_boundaries
from .components import StepContext
from .copypaste import bidirectional_paste, boundary_cuboids, cuboid_masks, paste
from .losses import ce_dice, sigmoid_rampup
from .options import Options
from .pseudolabels import pseudo_labels
from .registry import TrainSetup, register_component


class BoundaryHead(nn.Module):
    """Boundary logits from decoder features: 3×3×3 conv, ReLU, 1×1×1 conv to one channel."""

    # No normalisation layer: the head sees mixed batches of any size (our choice).
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(channels, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)[:, 0]


@dataclass(frozen=True)
class BFAOptions:
    """Config keys of `[components.bfa]`."""

    weight: float = 1.0  # weight of the mixed-volume segmentation loss
    boundary_weight: float = 1.0  # boundary-head loss
    align_weight: float = 0.1  # boundary feature alignment loss
    unlabeled_weight: float = 0.5  # PL voxels relative to GT voxels (BCP's u_weight)
    warmup: float = 0.1  # fraction of training with PL-dependent terms off (GT parts still train)
    rampup: float = 0.4  # fraction of training over which PL-dependent terms then ramp up
    cuboid_fraction: float = 2 / 3  # cuboid side / patch side (BCP, 3D)
    candidates: int = 4  # boundary-centred cuboids tried per sample
    threshold: float = 0.0  # teacher confidence below which PL voxels get no weight (BCP: none)
    largest_component: bool = True  # keep the largest PL component per class (BCP on LA)


RANGES = {
    "weight": (0.0, 100.0),
    "boundary_weight": (0.0, 100.0),
    "align_weight": (0.0, 100.0),
    "unlabeled_weight": (0.0, 1.0),
    "warmup": (0.0, 1.0),
    "rampup": (0.0, 1.0),
    "cuboid_fraction": (0.05, 1.0),
    "candidates": (1, 64),
    "threshold": (0.0, 1.0),
}


def boundary_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Class-balanced BCE (positive weight = negatives / positives) plus soft Dice, voxel-weighted."""
    # Precursor: HED's class-balanced BCE (Xie & Tu, ICCV 2015), plus Dice for the thin boundary class.
    logits = logits.float()
    t = target.float()
    w = weight.float()
    pos = (t * w).sum()
    neg = ((1 - t) * w).sum()
    pos_weight = (neg / pos.clamp_min(1.0)).clamp(1.0, 100.0).detach()
    bce = F.binary_cross_entropy_with_logits(logits, t, weight=w, pos_weight=pos_weight)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * t * w).sum() + smooth) / ((p * w).sum() + (t * w).sum() + smooth)
    return bce + dice


def alignment_loss(features: torch.Tensor, gt_boundary: torch.Tensor, pl_boundary: torch.Tensor) -> torch.Tensor | None:
    """Mean over classes of 1 - cos(mean PL-boundary feature, mean GT-boundary feature (detached)).

    features (N, F, D, H, W); gt/pl_boundary (N, C, D, H, W) bool. None when no class has both.
    """
    # Precursor: class-prototype alignment by cosine similarity (SS-Net, Wu et al., MICCAI 2022);
    # restricting it to boundary voxels and anchoring on the GT side is our reading of BFA.
    features = features.float()
    terms = []
    for c in range(gt_boundary.shape[1]):
        g, p = gt_boundary[:, c].unsqueeze(1), pl_boundary[:, c].unsqueeze(1)
        if not bool(g.any()) or not bool(p.any()):
            continue
        proto_gt = (features * g).sum(dim=(0, 2, 3, 4)) / g.sum()
        proto_pl = (features * p).sum(dim=(0, 2, 3, 4)) / p.sum()
        terms.append(1 - F.cosine_similarity(proto_pl, proto_gt.detach(), dim=0))
    return torch.stack(terms).mean() if terms else None


class BFA:
    """The BFA loss component (name "bfa")."""

    name = "bfa"

    def __init__(self, feature_channels: int, n_classes: int, options: BFAOptions = BFAOptions(), seed: int = 0) -> None:
        self.options = options
        self.n_classes = n_classes
        self.head = BoundaryHead(feature_channels)
        self.generator = torch.Generator().manual_seed(seed)

    def modules_to_train(self) -> list[nn.Module]:
        """Extra modules whose parameters the optimiser must update (the boundary head)."""
        return [self.head]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.generator.set_state(state["generator"])

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        if ctx.x_u is None:
            raise RuntimeError("bfa needs unlabeled data")
        pl, confident = pseudo_labels(ctx.teacher_probs("u"), o.threshold, o.largest_component)
        n_u, n_l = ctx.x_u.shape[0], ctx.x_l.shape[0]
        pair = torch.arange(n_u) % n_l  # each unlabeled volume is mixed with one labeled volume
        x_l, y_l = ctx.x_l[pair], ctx.y_l[pair]
        cb_l, cb_u = class_boundaries(y_l, self.n_classes), class_boundaries(pl, self.n_classes)
        b_l, b_u = cb_l.any(dim=1), cb_u.any(dim=1)
        shape = tuple(pl.shape[1:])
        device = pl.device
        m_in = cuboid_masks(boundary_cuboids(b_u, b_l, o.cuboid_fraction, self.generator, o.candidates), shape, device)
        m_out = cuboid_masks(boundary_cuboids(b_l, b_u, o.cuboid_fraction, self.generator, o.candidates), shape, device)
        inward, outward = bidirectional_paste(x_l, y_l, ctx.x_u, pl, m_in, m_out)
        image = torch.cat([inward.image, outward.image])
        label = torch.cat([inward.label, outward.label])
        from_l = torch.cat([inward.from_labeled, outward.from_labeled])
        conf = torch.cat([confident, confident])
        # Our choice: each part keeps its source's own boundaries; the cuboid faces are not boundaries.
        boundaries = torch.cat([paste(cb_l, cb_u, m_in), paste(cb_u, cb_l, m_out)])  # (2N, C, D, H, W)

        # As the mean teacher (UA-MT): PL-dependent terms off during warm-up, then a sigmoid ramp.
        ramp = 0.0 if ctx.progress < o.warmup else sigmoid_rampup(ctx.progress - o.warmup, o.rampup)
        weight = torch.where(from_l, torch.ones_like(conf), o.unlabeled_weight * ramp * conf)
        logits, features = ctx.student(image, return_features=True)
        seg = sum(ce_dice(logits, label, weight))
        bnd = boundary_loss(self.head(features), boundaries.any(dim=1), weight)
        gt_b = boundaries & from_l.unsqueeze(1)
        pl_b = boundaries & (~from_l & (conf > 0)).unsqueeze(1)
        align = alignment_loss(features, gt_b, pl_b) if ramp > 0 else None
        total = o.weight * seg + o.boundary_weight * bnd
        if align is not None:
            total = total + o.align_weight * ramp * align
        logs = {
            "bfa_seg": float(seg.detach()),
            "bfa_boundary": float(bnd.detach()),
            "bfa_ramp": ramp,
            "bfa_gt_boundary_voxels": float(gt_b.any(dim=1).sum()) / image.shape[0],
            "bfa_pl_boundary_voxels": float(pl_b.any(dim=1).sum()) / image.shape[0],
        }
        if align is not None:
            logs["bfa_align"] = float(align.detach())
        return total, logs


@register_component("bfa")
def build_bfa(table: dict[str, Any], setup: TrainSetup) -> BFA:
    """`[components.bfa]`: BFA with a mean teacher (requests the EMA teacher)."""
    o, d = Options("bfa", table), BFAOptions()
    options = BFAOptions(**{f.name: o.get(f.name, getattr(d, f.name), *RANGES.get(f.name, ())) for f in fields(d)})
    o.done()
    setup.require_teacher()
    component = BFA(setup.feature_channels, setup.n_classes, options, seed=setup.seed)
    component.head.to(setup.device)
    return component
