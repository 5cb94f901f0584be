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

from .bands import fft_dims, filter_bands, hermitian_weights, shell_index, spatial_ndim, symmetrise_half
from .spectrum import amplitude_phase, recompose


def amplitude_gradient(x: torch.Tensor, grad_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-grid amplitude of x and dL/d(amplitude), from dL/dx (one FFT pair, no network pass)."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp, phase = amplitude_phase(x.detach())
    with torch.enable_grad():
        a = amp.clone().requires_grad_(True)
        x_rec = recompose(a, phase, shape)
        (g,) = torch.autograd.grad(x_rec, a, grad_outputs=grad_x.to(x_rec.dtype))
    return amp, g


def band_reliance(
    x: torch.Tensor, grad_x: torch.Tensor, n_bands: int, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """(N, n_bands) reliance of each sample on each radial shell: the mean over the shell of
    |dL/dA · A| (channels summed), the first-order change of the loss if those components went.

    Our choice of the per-component mean (not the sum) follows AAD's per-component gradient, so
    outer shells are not favoured by holding more components.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp, g = amplitude_gradient(x, grad_x)
    saliency = (g * amp).abs().sum(1)  # (N, *half)
    w = hermitian_weights(shape, device=x.device).expand(saliency.shape[1:])
    idx = shell_index(shape, n_bands, spacing, device=x.device).flatten()
    sums = torch.zeros(x.shape[0], n_bands, dtype=saliency.dtype, device=x.device)
    sums.index_add_(1, idx, (saliency * w).reshape(x.shape[0], -1))
    counts = torch.zeros(n_bands, dtype=w.dtype, device=x.device).index_add_(0, idx, w.flatten())
    return sums / counts.clamp_min(1)


class FASE:
    """Band weights from a running estimate of the model's band reliance.

    In a training loop: `fase.update_from_grad(x, x.grad)` after the backward pass of the clean
    batch (x.requires_grad_() before the forward), then `fase.apply(x_aug)` on the batch to augment.
    strength s sets how hard weights react: w_b = 2 / (1 + ρ_b^s) with ρ_b the band's reliance
    relative to the mean band (1 = average, weight 1); s = 0 leaves volumes unchanged.
    """

    def __init__(
        self,
        n_bands: int = 8,
        strength: float = 1.0,
        momentum: float = 0.9,
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
        """Fold the batch's relative band reliance into the running estimate; returns it (N, n_bands)."""
        r = band_reliance(x, grad_x, self.n_bands, self.spacing)
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
        return 2.0 / (1.0 + rho.clamp_min(0) ** self.strength)

    def apply(
        self,
        x: torch.Tensor,
        *,
        stochastic: bool = False,
        reliance: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reweight x's bands (phase kept). Stochastic: components of over-relied bands (ρ > 1) are
        dropped with probability drop_rate·(ρ - 1)/(ρ_max - 1), the others kept as they are;
        under-used bands are still enhanced by their weight."""
        w = self.weights(reliance)
        if not stochastic:
            return filter_bands(x, w, self.spacing)
        rho = reliance if reliance is not None else self.reliance
        if rho is None:
            return x.clone()
        rho = rho / rho.mean(-1, keepdim=True).clamp_min(1e-30)
        excess = (rho - 1).clamp_min(0)
        p_drop = self.drop_rate * excess / excess.amax(-1, keepdim=True).clamp_min(1e-12)
        nd = spatial_ndim(x)
        shape = tuple(x.shape[-nd:])
        idx = shell_index(shape, self.n_bands, self.spacing, device=x.device)
        n = x.shape[0]
        u = torch.rand(n, 1, *idx.shape, generator=generator).to(x.device)
        u = symmetrise_half(u, shape)
        band_w = (w if w.dim() == 2 else w.expand(n, -1)).to(x.device, x.dtype)
        band_p = (p_drop if p_drop.dim() == 2 else p_drop.expand(n, -1)).to(x.device, x.dtype)
        over = (excess if excess.dim() == 2 else excess.expand(n, -1)).to(x.device) > 0
        per_w = band_w[:, idx].unsqueeze(1)
        per_p = band_p[:, idx].unsqueeze(1)
        per_over = over[:, idx].unsqueeze(1)
        gain = torch.where(per_over, (u >= per_p).to(x.dtype), per_w)
        dims = fft_dims(nd)
        spectrum = torch.fft.rfftn(x, dim=dims, norm="ortho")
        return torch.fft.irfftn(spectrum * gain, s=shape, dim=dims, norm="ortho")
