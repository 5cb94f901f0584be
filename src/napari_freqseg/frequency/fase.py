"""F-ASE: frequency-adaptive suppression/enhancement (Huang, Wang et al., PR 2026).

How much the model relies on each radial band is read from the gradient of the loss with respect
to the amplitude; bands are then reweighted in [0, 2]: over-relied bands suppressed, under-used
ones enhanced, so that the model has to learn from the whole spectrum. The stochastic variant
drops components of the over-relied bands at random instead, as AAD (He et al., NeurIPS 2024)
drops amplitude components with a probability that grows with their gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .amplitude_grad import AmplitudeGrad, amplitude_gradient
from .bands import fft_dims, hermitian_weights, shell_index, spatial_ndim, symmetrise_half


def band_reliance(x: torch.Tensor, grad_x: torch.Tensor, n_bands: int, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """(N, n_bands) reliance of each sample on each radial shell, from x and dL/dx."""
    return reliance_from(amplitude_gradient(x, grad_x), n_bands, spacing)


def reliance_from(ag: AmplitudeGrad, n_bands: int, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """(N, n_bands): the mean over each shell of |dL/dA · A| (channels summed), the first-order
    change of the loss if those components went.

    Our choice of the per-component mean (not the sum) follows AAD's per-component gradient, so
    outer shells are not favoured by holding more components.
    """
    saliency = (ag.grad * ag.amplitude).abs().sum(1)  # (N, *half)
    n = saliency.shape[0]
    w = hermitian_weights(ag.shape, device=saliency.device).expand(saliency.shape[1:])
    idx = shell_index(ag.shape, n_bands, spacing, device=saliency.device).flatten()
    weighted = (saliency * w).reshape(n, -1)
    sums = torch.stack([torch.bincount(idx, weights=row, minlength=n_bands) for row in weighted])
    counts = torch.bincount(idx, weights=w.flatten(), minlength=n_bands)
    return (sums / counts.clamp_min(1)).to(saliency.dtype)


class FASE:
    """Band weights from a running estimate of the model's band reliance.

    In a training loop: `fase.update_from_grad(x, x.grad)` after the backward pass of the clean
    batch (x.requires_grad_() before the forward), then `fase.apply(x_aug)` on the batch to augment
    (or `fase.update(ag)` and `laae_attack(..., clean_grad=ag, gain=fase.gain(...))` to share the
    transforms with L-AAE).
    strength s sets how hard weights react: w_b = 2 / (1 + ρ_b^s) with ρ_b the band's reliance
    relative to the mean band (1 = average, weight 1); s = 0 leaves volumes unchanged.
    """

    def __init__(
        self,
        n_bands: int = 8,
        strength: float = 1.0,
        momentum: float = 0.9,  # our choice: running average over about ten steps
        drop_rate: float = 0.5,
        spacing: Sequence[float] | None = None,
    ) -> None:
        self.n_bands = n_bands
        self.strength = strength
        self.momentum = momentum
        self.drop_rate = drop_rate
        self.spacing = spacing
        self.reliance: torch.Tensor | None = None  # (n_bands,), mean 1

    def update_from_grad(self, x: torch.Tensor, grad_x: torch.Tensor) -> torch.Tensor:
        """Fold the batch's relative band reliance (from x and dL/dx) into the running estimate."""
        return self.update(amplitude_gradient(x, grad_x))

    def update(self, ag: AmplitudeGrad) -> torch.Tensor:
        """Same, from an `AmplitudeGrad` shared with L-AAE; returns the batch's (N, n_bands) reliance."""
        r = reliance_from(ag, self.n_bands, self.spacing)
        relative = r / r.mean(-1, keepdim=True).clamp_min(1e-30)
        batch = relative.mean(0).detach().cpu()
        if self.reliance is None:
            self.reliance = batch
        else:
            self.reliance = self.momentum * self.reliance + (1 - self.momentum) * batch
        return relative

    def weights(self, reliance: torch.Tensor | None = None) -> torch.Tensor:
        """Band weights in [0, 2], lowest where reliance is highest: (n_bands,) or (N, n_bands)."""
        rho = reliance if reliance is not None else self.reliance
        if rho is None:
            return torch.ones(self.n_bands)
        rho = rho / rho.mean(-1, keepdim=True).clamp_min(1e-30)
        # our choice of curve: the paper bounds weights to [0, 2]; 2/(1+ρ^s) is 1 at average reliance
        return 2.0 / (1.0 + rho.clamp_min(0) ** self.strength)

    def gain(
        self,
        shape: Sequence[int],
        n: int = 1,
        *,
        stochastic: bool = False,
        reliance: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Per-frequency multiplier on the half grid of `shape`, (1 or n, 1, *half), values in [0, 2].

        Deterministic: each shell's weight. Stochastic: components of over-relied bands (ρ > 1)
        are dropped with probability drop_rate·(ρ - 1)/(ρ_max - 1) and kept as they are otherwise;
        under-used bands are still enhanced by their weight.
        """
        shape = tuple(shape)
        idx = shell_index(shape, self.n_bands, self.spacing, device=device)
        w = self.weights(reliance).to(device)
        if not stochastic:
            return (w[idx] if w.dim() == 1 else w[:, idx]).reshape(-1, 1, *idx.shape)
        rho = reliance if reliance is not None else self.reliance
        if rho is None:
            return torch.ones(1, 1, *idx.shape, device=device)
        rho = (rho / rho.mean(-1, keepdim=True).clamp_min(1e-30)).to(device)
        excess = (rho - 1).clamp_min(0)
        # AAD drops components with a probability growing with their gradient; here per band, over-relied only
        p_drop = self.drop_rate * excess / excess.amax(-1, keepdim=True).clamp_min(1e-12)
        u = symmetrise_half(torch.rand(n, 1, *idx.shape, generator=generator).to(device), shape)
        per = [t.expand(n, -1)[:, idx].unsqueeze(1) for t in (w, p_drop, excess)]
        return torch.where(per[2] > 0, (u >= per[1]).to(w.dtype), per[0])

    def apply(
        self,
        x: torch.Tensor,
        *,
        stochastic: bool = False,
        reliance: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x with its bands reweighted by `gain` (phase kept)."""
        nd = spatial_ndim(x)
        shape = tuple(x.shape[-nd:])
        g = self.gain(shape, x.shape[0], stochastic=stochastic, reliance=reliance, generator=generator, device=x.device)
        dims = fft_dims(nd)
        spectrum = torch.fft.rfftn(x, dim=dims, norm="ortho")
        return torch.fft.irfftn(spectrum * g.to(x.dtype), s=shape, dim=dims, norm="ortho")
