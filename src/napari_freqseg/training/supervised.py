"""Supervised loss on the labeled batch: cross-entropy + soft Dice."""

from __future__ import annotations

from typing import Any

import torch

from .components import StepContext
from .losses import ce_dice
from .options import Options
from .registry import TrainSetup, register_component


class Supervised:
    """weight · (ce_weight · CE + dice_weight · Dice) on the student's labeled predictions."""

    name = "supervised"

    def __init__(self, weight: float = 1.0, ce_weight: float = 0.5, dice_weight: float = 0.5) -> None:
        self.weight, self.ce_weight, self.dice_weight = weight, ce_weight, dice_weight

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        ce, dice = ce_dice(ctx.student_logits("l"), ctx.y_l, ce_weight=self.ce_weight, dice_weight=self.dice_weight)
        return self.weight * (ce + dice), {"sup_ce": ce.item(), "sup_dice": dice.item()}


@register_component("supervised")
def build(table: dict[str, Any], setup: TrainSetup) -> Supervised:
    o = Options("supervised", table)
    comp = Supervised(o.get("weight", 1.0, 0.0), o.get("ce_weight", 0.5, 0.0), o.get("dice_weight", 0.5, 0.0))
    o.done()
    return comp
