"""L-AAE: low-frequency adversarial adaptive enhancement (Huang, Wang et al., PR 2026).

The "style" of a volume is the mean and spread of its amplitude inside the low-frequency box.
L-AAE moves both, per sample, in units of the batch's (or the sources') spread of styles, by k
signed-gradient steps that raise the loss for half of the batch and lower it for the other half,
and keeps the phase. Details the paper leaves open follow AAUA (He et al., NeurIPS 2024,
"frequency simplicity-biased learning"): box statistics, spread units, sign steps; see
docs/methods.md.

Training loops that already compute dL/dx on the clean batch (set x.requires_grad_() before their
forward) pass it, or its `AmplitudeGrad`, as `clean_grad`: a one-step attack then costs no extra
network pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CancelledError
from .amplitude_grad import AmplitudeGrad, amplitude_gradient
from .bands import hermitian_weights, low_freq_box, spatial_ndim
from .grad import LossFn, Progress, input_gradient, masked_cross_entropy
from .spectrum import amplitude_phase, recompose

#: Spread unit of a lone volume (no batch, no sources to compare with): a fraction of its own style.
LONE_SPREAD = 0.1  # our choice: AAUA needs a batch; 10 % of the volume's own box statistics


@dataclass
class LowFreqStyle:
    """Mean and standard deviation of the low-frequency amplitude, (N, C) or (1, C)."""

    mean: torch.Tensor
    std: torch.Tensor


def lowfreq_style(amplitude: torch.Tensor, box: torch.Tensor, shape: Sequence[int]) -> LowFreqStyle:
    """Style of each sample and channel: box statistics on the half grid of a volume of spatial
    `shape`, weighted so that they equal the statistics over the full centred box."""
    nd = box.dim()
    w = (hermitian_weights(shape, amplitude.device) * box).to(amplitude.dtype)
    dims = tuple(range(-nd, 0))
    total = w.sum()
    mean = (amplitude * w).sum(dims) / total
    var = ((amplitude - mean.reshape(*mean.shape, *([1] * nd))) ** 2 * w).sum(dims) / total
    return LowFreqStyle(mean=mean, std=var.clamp_min(0).sqrt())


def restyle(amplitude: torch.Tensor, box: torch.Tensor, style: LowFreqStyle, new: LowFreqStyle) -> torch.Tensor:
    """Give the box amplitudes the `new` mean and spread (standardise, rescale); outside unchanged.

    Amplitudes are clamped at 0: a negative amplitude would flip the phase by π.
    """
    nd = box.dim()
    view = (*style.mean.shape, *([1] * nd))
    mu, sigma = style.mean.reshape(view), style.std.clamp_min(1e-12).reshape(view)
    new_mu, new_sigma = new.mean.reshape(-1, new.mean.shape[-1], *([1] * nd)), new.std.reshape(-1, new.std.shape[-1], *([1] * nd))
    # written as a change of the amplitude so that an unchanged style gives it back exactly
    moved = (amplitude + (amplitude - mu) * (new_sigma / sigma - 1) + (new_mu - mu)).clamp_min(0)
    return torch.where(box, moved, amplitude)


def batch_spread(style: LowFreqStyle) -> LowFreqStyle:
    """Spread of styles across the batch, per channel (AAUA's unit); a lone sample uses LONE_SPREAD
    of its own style."""
    if style.mean.shape[0] < 2:
        return LowFreqStyle(mean=LONE_SPREAD * style.mean.abs() + 1e-6, std=LONE_SPREAD * style.std + 1e-6)
    return LowFreqStyle(mean=style.mean.std(0, keepdim=True) + 1e-6, std=style.std.std(0, keepdim=True) + 1e-6)


def bidirectional(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """+1 (raise the loss) for a random half of n samples, -1 (lower it) for the rest; odd n: one more +1."""
    # our choice: the paper says "bidirectional" without the split; a random half keeps both kinds in every batch
    signs = torch.ones(n)
    signs[(n + 1) // 2 :] = -1.0
    return signs[torch.randperm(n, generator=generator)]


class StyleBank:
    """Running low-frequency style statistics per source (site), exponential moving averages.

    `spread()` is the spread of styles over all sources (the L-AAE unit when batches are small);
    `centre()` the mean style of the sources, towards which `laae_attack(align=...)` pulls samples.
    """

    def __init__(self, momentum: float = 0.99) -> None:
        self.momentum = momentum
        self._first: dict[int, torch.Tensor] = {}
        self._second: dict[int, torch.Tensor] = {}

    def update(self, style: LowFreqStyle, sites: torch.Tensor | None = None) -> None:
        stats = torch.stack([style.mean, style.std], dim=-1).detach()  # (N, C, 2)
        if any(v.device != stats.device for v in self._first.values()):  # restored from a checkpoint on the CPU
            self._first = {k: v.to(stats.device) for k, v in self._first.items()}
            self._second = {k: v.to(stats.device) for k, v in self._second.items()}
        site_ids = torch.zeros(stats.shape[0], dtype=torch.long) if sites is None else sites.detach().cpu().long()
        for site in site_ids.unique().tolist():
            rows = stats[(site_ids == site).to(stats.device)]
            first, second = rows.mean(0), (rows**2).mean(0)
            if site not in self._first:
                self._first[site], self._second[site] = first, second
            else:
                m = self.momentum
                self._first[site] = m * self._first[site] + (1 - m) * first
                self._second[site] = m * self._second[site] + (1 - m) * second

    @property
    def sites(self) -> list[int]:
        return sorted(self._first)

    def state_dict(self) -> dict[str, dict[int, torch.Tensor]]:
        """The running statistics, for training checkpoints."""
        return {"first": dict(self._first), "second": dict(self._second)}

    def load_state_dict(self, state: dict[str, dict[int, torch.Tensor]]) -> None:
        self._first, self._second = dict(state["first"]), dict(state["second"])

    def centre(self) -> LowFreqStyle | None:
        if not self._first:
            return None
        c = torch.stack(list(self._first.values())).mean(0)
        return LowFreqStyle(mean=c[None, :, 0], std=c[None, :, 1])

    def spread(self) -> LowFreqStyle | None:
        if not self._first:
            return None
        first = torch.stack(list(self._first.values())).mean(0)
        second = torch.stack(list(self._second.values())).mean(0)
        s = (second - first**2).clamp_min(0).sqrt() + 1e-6
        return LowFreqStyle(mean=s[None, :, 0], std=s[None, :, 1])


@dataclass
class LAAEResult:
    """Adversarial batch and what was done to it."""

    x: torch.Tensor  # adversarial volumes, same shape as the input, detached
    directions: torch.Tensor  # (N,) +1: loss raised, -1: loss lowered
    shift: LowFreqStyle  # final shifts of mean and spread, in spread units, (N, C)
    style: LowFreqStyle  # clean style (N, C)
    new_style: LowFreqStyle  # style of the adversarial volumes (N, C)


def laae_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn = masked_cross_entropy,
    *,
    mask: torch.Tensor | None = None,
    beta: float = 0.05,
    steps: int = 1,
    step_size: float = 1.0,
    init_std: float = 0.0,
    directions: torch.Tensor | None = None,
    spread: LowFreqStyle | None = None,
    centre: LowFreqStyle | None = None,
    align: float = 0.0,
    clean_grad: torch.Tensor | AmplitudeGrad | None = None,
    gain: torch.Tensor | None = None,
    linearise: bool = False,
    tile: int | None = None,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> LAAEResult:
    """Bidirectional adversarial perturbation of the low-frequency style of a batch.

    x: (N, C, *spatial) network input; target: (N, *spatial) labels or pseudo-labels; mask: voxel
    weights (e.g. teacher confidence) passed to loss_fn(logits, target, mask). beta: box half-width
    fraction per axis. steps × step_size: signed-gradient steps in spread units (`spread`, default
    the batch's). init_std: random start (AAUA starts at N(0, 1); 0 starts at the clean style).
    directions: (N,) ±1, default a random half up, half down. centre/align: first pull each style
    this fraction of the way towards the sources' mean style. clean_grad: dL/dx at the clean batch
    (or its `AmplitudeGrad`), which serves the first step when it starts at the clean style: a
    one-step attack then runs no network pass. gain: a multiplier of the adversarial amplitude
    (`FASE.gain`), applied in the same inverse transform. linearise: let clean_grad serve the first
    step also when `align` moves the start towards `centre` (the gradient at the clean style
    stands in for the one at the pulled start: first order, the pull is a fraction of the style
    spread); a one-step attack then never runs the network. The model is left untouched (grad.py);
    the network runs in eval mode during the attack.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    n, c = x.shape[:2]
    if isinstance(clean_grad, AmplitudeGrad):
        shared: AmplitudeGrad | None = clean_grad
        amp, phase = clean_grad.amplitude, clean_grad.phase
    else:
        shared = None
        amp, phase = amplitude_phase(x.detach())
    box = low_freq_box(shape, beta, device=x.device)
    style = lowfreq_style(amp, box, shape)
    unit = spread if spread is not None else batch_spread(style)
    unit = LowFreqStyle(mean=unit.mean.to(x.device), std=unit.std.to(x.device))
    base = style
    if centre is not None and align:
        base = LowFreqStyle(
            mean=style.mean + align * (centre.mean.to(x.device) - style.mean),
            std=style.std + align * (centre.std.to(x.device) - style.std),
        )
    dirs = (directions if directions is not None else bidirectional(n, generator)).to(x.device, x.dtype).reshape(n, 1)
    # AAUA starts at d ~ N(0, 1); our default 0 starts at the clean style, so clean_grad can serve step 1
    d_mean = (init_std * torch.randn(n, c, generator=generator)).to(x.device, x.dtype)
    d_std = (init_std * torch.randn(n, c, generator=generator)).to(x.device, x.dtype)
    at_clean = init_std == 0 and (base is style or linearise)

    def restyled(dm: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:  # AAUA: style moved in spread units
        new = LowFreqStyle(mean=base.mean + dm * unit.mean, std=(base.std + ds * unit.std).clamp_min(0))
        return restyle(amp, box, style, new)

    for step in range(steps):
        if cancelled is not None and cancelled():
            raise CancelledError("cancelled")
        if step == 0 and at_clean and clean_grad is not None:
            ag = shared if shared is not None else amplitude_gradient(x, clean_grad)
            g_mean, g_std = _style_gradient_at_clean(ag.grad, amp, box, style, unit, shape)
        else:
            dm = d_mean.clone().requires_grad_(True)
            ds = d_std.clone().requires_grad_(True)
            with torch.enable_grad():
                x_k = recompose(restyled(dm, ds), phase, shape)
                g = input_gradient(model, x_k.detach(), target, loss_fn, mask, tile=tile, progress=progress, cancelled=cancelled)
                g_mean, g_std = torch.autograd.grad(x_k, [dm, ds], grad_outputs=g)
        d_mean = d_mean + step_size * dirs * g_mean.sign()
        d_std = d_std + step_size * dirs * g_std.sign()
        if progress is not None:
            progress(step + 1, steps, f"attack step {step + 1}/{steps}")
    with torch.no_grad():
        final = restyled(d_mean, d_std)
        if gain is not None:
            final = final * gain.to(final.device, final.dtype)
        x_adv = recompose(final, phase, shape)
    return LAAEResult(
        x=x_adv,
        directions=dirs.flatten(),
        shift=LowFreqStyle(mean=d_mean, std=d_std),
        style=style,
        new_style=lowfreq_style(final, box, shape),
    )


def _style_gradient_at_clean(
    grad_amp: torch.Tensor,
    amp: torch.Tensor,
    box: torch.Tensor,
    style: LowFreqStyle,
    unit: LowFreqStyle,
    shape: tuple[int, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/d(shift of mean, shift of spread) at zero shift, by the chain rule through `restyle`:
    d(box amplitude)/d(mean shift) = unit.mean, d(box amplitude)/d(spread shift) = (A - μ)/σ · unit.std."""
    nd = len(shape)
    dims = tuple(range(-nd, 0))
    view = (*style.mean.shape, *([1] * nd))
    inside = grad_amp * box
    standardised = (amp - style.mean.reshape(view)) / style.std.clamp_min(1e-12).reshape(view)
    return inside.sum(dims) * unit.mean, (inside * standardised).sum(dims) * unit.std
