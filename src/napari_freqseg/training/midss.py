"""MiDSS (Ma et al., CVPR 2024) and UST-RUN (IEEE TMI 2025) in 3D as one component, "midss".

Per step, following the authors' released 2D code (MQinghe/MiDSS `train.py`, MQinghe/UST-RUN
`work.py`), with switches for each part:
- Unified Copy-Paste (UCP, always on): each unlabeled volume gets a paste source (a labeled volume,
  or a queued reliable one); a CutMix cuboid is pasted both ways between the strongly augmented
  unlabeled volume and the source. Pseudo-labeled voxels count only where the teacher is confident;
  source voxels count fully (labeled) or where their stored confidence held (queued).
- `symgd`: Symmetric Guidance. The teacher also predicts the two weakly mixed volumes; their
  unlabeled parts are merged into one pseudo-label for the whole unlabeled volume, kept where both
  are confident and agree with the clean prediction; it supervises the student on the strong view.
- `tp_ram`: the labeled source's low-frequency amplitude is mixed toward its unlabeled partner's,
  with ratio r ~ U(0, t/T) (Training-Process-aware Random Amplitude MixUp).
- `reliability` (UST-RUN): unlabeled samples whose student and teacher predictions agree enter a
  queue and are pasted into other unlabeled volumes (half of the sources when available); the
  hardest sample of each step gets, at the next step, a labeled object pasted over the bounding box
  of both objects. The released code computes that hardest-sample loss but never adds it (a variable
  is reset only in its other branch); here it is trained.
Loss (released code): w·(L_ul + L_lu + w·L_sym), w = sigmoid ramp-up over training.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from ..frequency.mixing import tp_ram
from .components import StepContext
from .config import ConfigError
from .copypaste import cover_cuboid, cuboid_masks, cutmix_cuboids, paste
from .intensity_aug import strong_intensity
from .losses import ce_dice, sigmoid_rampup
from .options import Options
from .pseudolabels import pseudo_labels
from .registry import TrainSetup, register_component
from .reliability import ReliableQueue, hardness


@dataclass(frozen=True)
class MiDSSOptions:
    """Config keys of `[components.midss]`."""

    weight: float = 1.0  # overall factor on the unsupervised loss
    threshold: float = 0.95  # teacher confidence for pseudo-labels (released code)
    warmup: float = 0.0  # fraction of training with w = 0 (released: none)
    rampup: float = 1.0  # fraction of training for the sigmoid ramp-up of w (released: whole run)
    strong_aug: bool = True  # student sees a strongly augmented unlabeled view
    symgd: bool = True
    tp_ram: bool = True
    tp_ram_beta: float = 0.05  # low-frequency box half-width / side per axis (released 2D: 0.01 of 384 px)
    reliability: bool = True
    queue_size: int = 20
    reliable_threshold: float = 0.1  # initial and maximum hardness threshold
    threshold_growth: float = 1.0005
    reliability_warmup: float = 0.01  # no queueing before this fraction (released: first epoch, 500/60000)
    hardest_paste: bool = True
    box_min: float = 0.02  # CutMix cuboid volume fraction range (released 2D area range)
    box_max: float = 0.4


RANGES = {
    "weight": (0.0, 100.0),
    "threshold": (0.0, 1.0),
    "warmup": (0.0, 1.0),
    "rampup": (0.0, 1.0),
    "tp_ram_beta": (0.001, 0.5),
    "queue_size": (1, 10_000),
    "reliable_threshold": (0.0, 1.0),
    "threshold_growth": (1.0, 2.0),
    "reliability_warmup": (0.0, 1.0),
    "box_min": (0.0, 1.0),
    "box_max": (0.0, 1.0),
}


@dataclass
class _Sources:
    """Per unlabeled sample: the volume pasted with it (student and teacher views), label, mask."""

    x: torch.Tensor
    x_weak: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor


class MiDSS:
    """The MiDSS / UST-RUN loss component (name "midss")."""

    name = "midss"

    def __init__(self, n_classes: int, options: MiDSSOptions = MiDSSOptions(), seed: int = 0) -> None:
        if options.box_min > options.box_max:
            raise ValueError("box_min must not exceed box_max")
        self.options = options
        self.n_classes = n_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.queue = ReliableQueue(options.queue_size, options.reliable_threshold, options.threshold_growth)
        self.hardest: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # image, pseudo-label, mask

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.state_dict(), "hardest": self.hardest, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue.load_state_dict(state["queue"])
        self.hardest = state["hardest"]
        self.generator.set_state(state["generator"])

    def _sources(self, ctx: StepContext, n_u: int) -> tuple[_Sources, dict[str, float]]:
        o = self.options
        x_u = ctx.x_u
        # Random labeled partner per unlabeled volume (released: pairs by index, equal batch sizes).
        pick = torch.randint(0, ctx.x_l.shape[0], (n_u,), generator=self.generator)
        x_weak = ctx.x_l[pick]
        x = x_weak
        logs: dict[str, float] = {}
        if o.tp_ram:
            if ctx.raw_l is None or ctx.raw_u is None or ctx.stats_l is None:
                raise RuntimeError("tp_ram needs raw intensities (raw_l, raw_u, stats_l) in the step context")
            raw, ratios = tp_ram(ctx.raw_l[pick], ctx.raw_u, ctx.progress, o.tp_ram_beta, self.generator)
            stats = ctx.stats_l[pick].to(raw.dtype).view(n_u, 2, 1, 1, 1, 1)
            x = ((raw - stats[:, 0]) / stats[:, 1]).to(x_u.dtype)
            logs["midss_tp_ram_ratio"] = float(ratios.mean())
        y = ctx.y_l[pick]
        mask = torch.ones_like(y, dtype=x_u.dtype)
        if o.reliability and len(self.queue) > 0:
            # Released UST-RUN: half the sources from the queue; here they serve both paste directions.
            k = min(n_u // 2, len(self.queue))
            slots = torch.randperm(n_u, generator=self.generator)[:k]
            picks = torch.randint(0, len(self.queue), (k,), generator=self.generator)
            dev = x_u.device
            q_img, q_lab, q_mask = (
                t[picks.to(t.device)].to(dev) for t in (self.queue.images, self.queue.labels, self.queue.masks)
            )
            s = slots.to(dev)
            x, x_weak, y, mask = x.clone(), x_weak.clone(), y.clone(), mask.clone()
            x[s], x_weak[s], y[s], mask[s] = q_img, q_img, q_lab, q_mask.to(mask.dtype)
            logs["midss_queued_sources"] = float(k)
        return _Sources(x, x_weak, y, mask), logs

    def _teacher(self, ctx: StepContext, src: _Sources, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher softmax on the clean unlabeled batch and, for SymGD, on both weak mixes: one
        teacher pass over all of them (instance norm: each sample is normalised on its own)."""
        if not self.options.symgd:
            return ctx.teacher_probs("u"), None
        n_u = ctx.x_u.shape[0]
        cached = ctx.cache.get("teacher_probs_u")
        with torch.no_grad():
            parts = [paste(ctx.x_u, src.x_weak, m), paste(src.x_weak, ctx.x_u, m)]
            if cached is None:
                parts.insert(0, ctx.x_u)
            probs = torch.softmax(ctx.teacher(torch.cat(parts)), dim=1)
        if cached is None:
            ctx.cache["teacher_probs_u"], probs = probs[:n_u], probs[n_u:]
        return ctx.cache["teacher_probs_u"], probs

    def _symmetric_target(
        self, mixes: torch.Tensor, m: torch.Tensor, pl: torch.Tensor, conf: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SymGD: the unlabeled parts of the teacher's predictions on both weak mixes, merged."""
        th = self.options.threshold
        p_ul, c_ul = pseudo_labels(mixes[: len(pl)], th)
        p_lu, c_lu = pseudo_labels(mixes[len(pl) :], th)
        merged = paste(p_ul, p_lu, m)
        mask = paste(c_ul, c_lu, m) * (merged == pl).to(conf.dtype) * conf
        return merged, mask

    def _hardest_mix(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """UST-RUN: a labeled volume pasted over the box covering both objects of the stored hardest sample."""
        image, label, mask = (t.to(ctx.x_l.device) for t in self.hardest)
        j = int(torch.randint(0, ctx.x_l.shape[0], (1,), generator=self.generator))
        box = cover_cuboid((label[0] > 0) | (ctx.y_l[j] > 0), self.generator)
        m = cuboid_masks([box], tuple(label.shape[1:]), label.device)
        return paste(image, ctx.x_l[j : j + 1], m), paste(label, ctx.y_l[j : j + 1], m), paste(mask, torch.ones_like(mask), m)

    def _update_reliability(
        self, ctx: StepContext, pl: torch.Tensor, conf: torch.Tensor, strong: torch.Tensor | None
    ) -> dict[str, float]:
        """Queue the reliable pseudo-labeled samples; hardness from the student's prediction on the
        unlabeled batch: `strong`, the logits of its strongly augmented view that SymGD already
        computed (our choice, it saves a student pass), else a pass on the clean batch."""
        o = self.options
        cached = ctx.cache.get("student_logits_u")
        with torch.no_grad():
            if strong is not None:
                logits = strong.detach()
            else:
                logits = cached.detach() if cached is not None else ctx.student(ctx.x_u)
        h = hardness(logits.argmax(dim=1), pl, self.n_classes)
        admitted = self.queue.offer(ctx.x_u, pl, conf, h) if ctx.progress >= o.reliability_warmup else 0
        i = int(h.argmax())
        self.hardest = (ctx.x_u[i : i + 1].detach().clone(), pl[i : i + 1].clone(), conf[i : i + 1].clone())
        return {
            "midss_hardness": float(h.mean()),
            "midss_admitted": float(admitted),
            "midss_queue": float(len(self.queue)),
            "midss_reliable_threshold": self.queue.threshold,
        }

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        if ctx.x_u is None:
            raise RuntimeError("midss needs unlabeled data")
        if ctx.progress < o.warmup:
            return ctx.x_l.new_zeros(()), {"midss_w": 0.0}
        w = sigmoid_rampup(ctx.progress - o.warmup, o.rampup)
        n_u = ctx.x_u.shape[0]
        shape = tuple(ctx.x_u.shape[2:])
        src, logs = self._sources(ctx, n_u)
        x_s = strong_intensity(ctx.x_u, self.generator) if o.strong_aug else ctx.x_u
        m = cuboid_masks(cutmix_cuboids(n_u, shape, self.generator, (o.box_min, o.box_max)), shape, ctx.x_u.device)
        probs_u, probs_mixes = self._teacher(ctx, src, m)
        pl, conf = pseudo_labels(probs_u, o.threshold)

        images = [paste(x_s, src.x, m), paste(src.x, x_s, m)]
        targets = [paste(pl, src.y, m), paste(src.y, pl, m)]
        masks = [paste(conf, src.mask, m), paste(src.mask, conf, m)]
        if o.symgd:
            sym_target, sym_mask = self._symmetric_target(probs_mixes, m, pl, conf)
            images.append(x_s)
        hard = o.reliability and o.hardest_paste and self.hardest is not None
        if hard:
            h_img, h_lab, h_mask = self._hardest_mix(ctx)
            images.append(h_img)
        logits = ctx.student(torch.cat(images)).split(n_u)  # one pass (our choice; instance norm is per sample)

        ul_logits, ul_target, ul_mask = logits[0], targets[0], masks[0]
        if hard:
            ul_logits = torch.cat([ul_logits, logits[-1]])
            ul_target, ul_mask = torch.cat([ul_target, h_lab]), torch.cat([ul_mask, h_mask])
            logs["midss_hardest_pasted"] = 1.0
        l_ul = sum(ce_dice(ul_logits, ul_target, ul_mask))
        l_lu = sum(ce_dice(logits[1], targets[1], masks[1]))
        total = l_ul + l_lu
        logs |= {
            "midss_ul": float(l_ul.detach()),
            "midss_lu": float(l_lu.detach()),
            "midss_w": w,
            "midss_confident": float(conf.mean()),
        }
        if o.symgd:
            l_sym = sum(ce_dice(logits[2], sym_target, sym_mask))
            total = total + w * l_sym
            logs |= {"midss_sym": float(l_sym.detach()), "midss_sym_kept": float(sym_mask.mean())}
        if o.reliability:
            logs |= self._update_reliability(ctx, pl, conf, logits[2] if o.symgd else None)
        return o.weight * w * total, logs


@register_component("midss")
def build_midss(table: dict[str, Any], setup: TrainSetup) -> MiDSS:
    """`[components.midss]`: UCP with switches symgd / tp_ram / reliability (requests the EMA teacher)."""
    o, d = Options("midss", table), MiDSSOptions()
    options = MiDSSOptions(**{f.name: o.get(f.name, getattr(d, f.name), *RANGES.get(f.name, ())) for f in fields(d)})
    o.done()
    setup.require_teacher()
    try:
        return MiDSS(setup.n_classes, options, seed=setup.seed)
    except ValueError as exc:
        raise ConfigError(f"[components.midss] {exc}") from None
