"""Mean teacher consistency (Tarvainen & Valpola 2017; UA-MT) with a confidence mask.

The teacher (EMA of the student, kept by the trainer) predicts the unlabeled batch under small
input noise; the student is pulled towards it where the teacher is confident. Its weight is zero
during a supervised warm-up, then rises with a sigmoid ramp-up: a naive, unmasked mean teacher
ended below the supervised baseline on LA at CPU scale (see docs/methods.md).
"""

from __future__ import annotations

from typing import Any

import torch

from .components import StepContext
from .losses import ce_dice, sigmoid_rampup
from .options import Options
from .registry import TrainSetup, register_component


class MeanTeacher:
    """Consistency between student and teacher predictions on unlabeled patches.

    kind 'mse': squared difference of softmax maps, averaged over voxels whose teacher confidence
    reaches `threshold`; kind 'pseudo': CE + Dice against the teacher's hard labels on those voxels.
    """

    name = "mean_teacher"

    def __init__(self, weight: float, warmup: float, rampup: float, threshold: float, kind: str, noise: float) -> None:
        self.weight, self.warmup, self.rampup = weight, warmup, rampup
        self.threshold, self.kind, self.noise = threshold, kind, noise

    def current_weight(self, ctx: StepContext) -> float:
        """0 during the warm-up fraction, then weight · sigmoid ramp over the ramp-up fraction."""
        t = ctx.progress
        if t < self.warmup:
            return 0.0
        return self.weight * sigmoid_rampup(t - self.warmup, self.rampup)

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.current_weight(ctx)
        if w == 0.0:
            return ctx.x_l.new_zeros(()), {"mt_weight": 0.0}
        assert ctx.teacher is not None and ctx.x_u is not None
        with torch.no_grad():
            noisy = ctx.x_u + torch.clamp(torch.randn_like(ctx.x_u) * self.noise, -2 * self.noise, 2 * self.noise)
            p_t = torch.softmax(ctx.teacher(noisy).float(), dim=1)
            ctx.cache.setdefault("teacher_probs_u_noisy", p_t)  # shared with components that need pseudo-labels
            conf, pseudo = p_t.max(dim=1)
            mask = (conf >= self.threshold).float()
        logits = ctx.student_logits("u")
        if self.kind == "mse":
            mse = ((torch.softmax(logits.float(), dim=1) - p_t) ** 2).mean(dim=1)
            value = (mse * mask).sum() / mask.sum().clamp_min(1.0)
        else:
            ce, dice = ce_dice(logits, pseudo, mask, 0.5, 0.5)
            value = ce + dice
        return w * value, {"mt": value.item(), "mt_weight": w, "mt_mask": mask.mean().item()}


@register_component("mean_teacher")
def build(table: dict[str, Any], setup: TrainSetup) -> MeanTeacher:
    o = Options("mean_teacher", table)
    comp = MeanTeacher(
        weight=o.get("weight", 1.0, 0.0),
        warmup=o.get("warmup", 0.1, 0.0, 1.0),
        rampup=o.get("rampup", 0.4, 0.0, 1.0),
        threshold=o.get("threshold", 0.8, 0.0, 1.0),
        kind=o.get("kind", "pseudo", choices=("mse", "pseudo")),
        noise=o.get("noise", 0.1, 0.0),
    )
    o.done()
    setup.require_teacher()
    return comp
