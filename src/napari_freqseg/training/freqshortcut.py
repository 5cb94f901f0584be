"""Frequency shortcuts (Huang, Wang et al., Pattern Recognition 2026): L-AAE + F-ASE on the student's inputs.

Each step the labeled volumes (with their labels) and the unlabeled volumes (with the teacher's
confident pseudo-labels) get one shared input gradient: the one the step's first backward pass
(supervised and mean-teacher losses) leaves on the clean inputs. From it, L-AAE moves each
volume's low-frequency style adversarially (half of the batch up the loss, half down, in units
of the sources' style spread, optionally pulled towards the mean style of the sources) and F-ASE re-weights radial frequency bands against the bands the student
relies on most. The student is trained on these volumes in addition to the originals (the
supervised and mean-teacher components see the clean ones); the teacher only ever sees clean input.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..frequency import FASE, StyleBank, confident_pseudo_labels, input_gradient, laae_attack, masked_cross_entropy
from ..frequency.amplitude_grad import amplitude_gradient
from ..frequency.spectrum import recompose
from .components import StepContext
from .config import ConfigError
from .losses import ce_dice, sigmoid_rampup
from .options import Options
from .registry import TrainSetup, register_component


class FrequencyShortcuts:
    """Loss on L-AAE/F-ASE volumes: CE + Dice against labels (labeled) and against confident teacher
    pseudo-labels (unlabeled, weight ramped up after a warm-up like the mean teacher's).

    It runs after the step's first backward pass (`uses_input_gradient`): dL/dx of the clean batch
    is then in `ctx.input_grad`, so building the volumes costs no network pass. Only a random
    `fraction` of the labeled and of the unlabeled samples is passed through the student again.
    """

    name = "frequency"
    uses_input_gradient = True

    def __init__(
        self,
        weight: float,
        unlabeled_weight: float,
        warmup: float,
        rampup: float,
        threshold: float,
        laae: dict[str, float] | None,
        fase: FASE | None,
        stochastic: bool,
        style_momentum: float,
        fraction: float = 0.5,
    ) -> None:
        self.weight, self.unlabeled_weight = weight, unlabeled_weight
        self.warmup, self.rampup, self.threshold = warmup, rampup, threshold
        self.laae, self.fase, self.stochastic = laae, fase, stochastic
        self.fraction = fraction
        self.bank = StyleBank(style_momentum)

    def unlabeled_factor(self, ctx: StepContext) -> float:
        if ctx.x_u is None or ctx.teacher is None or ctx.progress < self.warmup:
            return 0.0
        return self.unlabeled_weight * sigmoid_rampup(ctx.progress - self.warmup, self.rampup)

    def clean_gradient(self, ctx: StepContext, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """dL/dx of the clean batch from the step's first backward pass; samples it gave no gradient
        (no earlier component used them, or their loss weight was 0) get the student's masked-CE
        gradient in eval mode, as `input_gradient` computes it."""
        nl = ctx.x_l.shape[0]

        def part(key: str, n: int) -> torch.Tensor:
            g = ctx.input_grad.get(key)
            return g.detach() if g is not None else x.new_zeros(n, *x.shape[1:])

        grad = part("l", nl) if x.shape[0] == nl else torch.cat([part("l", nl), part("u", x.shape[0] - nl)])
        missing = (grad.flatten(1).abs().amax(1) == 0).nonzero().flatten()
        if len(missing):
            rows = missing.to(x.device)
            grad[rows] = input_gradient(ctx.student, x[rows], target[rows], masked_cross_entropy, mask[rows])
        return grad

    def augment(
        self,
        ctx: StepContext,
        x: torch.Tensor,
        grad: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        sites: torch.Tensor | None,
    ) -> torch.Tensor:
        """L-AAE and F-ASE on x from one amplitude gradient: one forward FFT of x, one autograd pair
        for dL/dA, and one inverse FFT for the restyled and band-weighted volumes (no network pass)."""
        ag = amplitude_gradient(x, grad)
        gain = None
        if self.fase is not None:
            self.fase.update(ag)
            gain = self.fase.gain(ag.shape, x.shape[0], stochastic=self.stochastic, device=x.device)
        if self.laae is None:
            return recompose(ag.amplitude * gain.to(ag.amplitude.dtype), ag.phase, ag.shape).detach()
        spread = self.bank.spread() if self.bank.sites else None
        result = laae_attack(
            ctx.student,
            x,
            target,
            masked_cross_entropy,
            mask=mask,
            beta=self.laae["beta"],
            steps=int(self.laae["steps"]),
            step_size=self.laae["step_size"],
            spread=spread,
            centre=self.bank.centre(),
            align=self.laae["align"],
            clean_grad=ag,
            gain=gain,
            linearise=True,
        )
        self.bank.update(result.style, sites)
        return result.x.detach()

    def keep(self, n: int, device: torch.device) -> torch.Tensor:
        """A random `fraction` of n sample indices (at least one): the mean loss over them is an
        unbiased estimate of the mean over all n."""
        # our choice, for cost: the paper trains on every adversarial volume; a random subset gives the same expected loss
        k = max(1, math.ceil(self.fraction * n))
        return torch.randperm(n)[:k].sort().values.to(device)

    def teacher_probs(self, ctx: StepContext) -> torch.Tensor:
        """The teacher's softmax on the unlabeled batch from a pass the step already made (clean, or
        the mean teacher's with its small input noise), else a clean pass."""
        for key in ("teacher_probs_u", "teacher_probs_u_noisy"):
            if ctx.cache.get(key) is not None:
                return ctx.cache[key]
        return ctx.teacher_probs("u")

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        nl = ctx.x_l.shape[0]
        w_u = self.unlabeled_factor(ctx)
        x, target, sites = ctx.x_l.detach(), ctx.y_l, ctx.site_l
        mask = torch.ones_like(ctx.y_l, dtype=x.dtype)
        if w_u > 0:
            pseudo, conf_mask = confident_pseudo_labels(self.teacher_probs(ctx).float(), self.threshold)
            x = torch.cat([x, ctx.x_u.detach()])
            target = torch.cat([target, pseudo])
            mask = torch.cat([mask, conf_mask.to(mask.dtype)])
            sites = torch.cat([sites, ctx.site_u]) if sites is not None and ctx.site_u is not None else None
        x_aug = self.augment(ctx, x, self.clean_gradient(ctx, x, target, mask), target, mask, sites)
        keep_l = self.keep(nl, x.device)
        keep_u = self.keep(x.shape[0] - nl, x.device) + nl if w_u > 0 else keep_l[:0]
        logits = ctx.student(x_aug[torch.cat([keep_l, keep_u])])
        kl = len(keep_l)
        ce, dice = ce_dice(logits[:kl], target[keep_l], None, 0.5, 0.5)
        total = self.weight * (ce + dice)
        logged = {"freq_l": (ce + dice).item(), "freq_u_weight": w_u}
        if w_u > 0:
            ce_u, dice_u = ce_dice(logits[kl:], target[keep_u], mask[keep_u], 0.5, 0.5)
            total = total + w_u * (ce_u + dice_u)
            logged |= {"freq_u": (ce_u + dice_u).item(), "freq_u_mask": mask[nl:].mean().item()}
        return total, logged

    def state_dict(self) -> dict[str, Any]:
        return {"reliance": self.fase.reliance if self.fase is not None else None, "styles": self.bank.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.fase is not None:
            self.fase.reliance = state["reliance"]
        self.bank.load_state_dict(state["styles"])


@register_component("frequency")
def build(table: dict[str, Any], setup: TrainSetup) -> FrequencyShortcuts:
    o = Options("frequency", table)
    use_laae, use_fase = o.get("laae", True), o.get("fase", True)
    laae = {
        "beta": o.get("beta", 0.1, 0.0, 0.5),
        "steps": o.get("steps", 1, 1),
        "step_size": o.get("step_size", 3.0, 0.0),
        "align": o.get("align", 0.0, 0.0, 1.0),
    }
    fase = FASE(
        n_bands=o.get("bands", 8, 2),
        strength=o.get("strength", 0.5, 0.0),
        momentum=o.get("fase_momentum", 0.9, 0.0, 1.0),
        drop_rate=o.get("drop_rate", 0.5, 0.0, 1.0),
        spacing=setup.spacing,
    )
    comp = FrequencyShortcuts(
        weight=o.get("weight", 1.0, 0.0),
        unlabeled_weight=o.get("unlabeled_weight", 1.0, 0.0),
        warmup=o.get("warmup", 0.1, 0.0, 1.0),
        rampup=o.get("rampup", 0.3, 0.0, 1.0),
        threshold=o.get("threshold", 0.8, 0.0, 1.0),
        laae=laae if use_laae else None,
        fase=fase if use_fase else None,
        stochastic=o.get("stochastic", False),
        style_momentum=o.get("style_momentum", 0.99, 0.0, 1.0),
        fraction=o.get("fraction", 0.5, 0.01, 1.0),
    )
    o.done()
    if not (use_laae or use_fase):
        raise ConfigError("[components.frequency]: enable laae, fase or both")
    if comp.unlabeled_weight > 0:
        setup.require_teacher()
    return comp
