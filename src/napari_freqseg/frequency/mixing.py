"""Low-frequency amplitude mixing between volumes: FDA and TP-RAM, on raw intensities.

Only the amplitude inside the low-frequency box changes; the phase and every amplitude outside
the box are kept, so anatomy stays and the "style" (contrast, bias field, overall intensity) of
the reference comes in. As in FDA and MiDSS, mixing is done on raw intensities, before any
normalisation, and the result is not clipped (clipping would change amplitudes outside the box).
"""

from __future__ import annotations

import torch

from .bands import low_freq_box, spatial_ndim
from .spectrum import amplitude_phase, recompose


def mix_amplitude(x: torch.Tensor, reference_amplitude: torch.Tensor, beta: float, ratio: float | torch.Tensor) -> torch.Tensor:
    """Inside the box: amplitude (1 - ratio)·|X| + ratio·|R|; phase and the rest of |X| kept.

    `reference_amplitude` is a half-grid amplitude broadcastable to x's (from `amplitude_phase`
    of a same-shaped reference, or `spectrum.amplitude_on_grid` for another grid); `ratio` a float
    or an (N,) tensor, one ratio per sample.
    """
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp, phase = amplitude_phase(x)
    box = low_freq_box(shape, beta, device=x.device)
    r = torch.as_tensor(ratio, dtype=amp.dtype, device=x.device)
    if r.dim() == 1:
        r = r.reshape(-1, *([1] * (amp.dim() - 1)))
    ref = reference_amplitude.to(device=x.device, dtype=amp.dtype)
    mixed = torch.where(box, (1 - r) * amp + r * ref, amp)
    return recompose(mixed, phase, shape)


def fda(x: torch.Tensor, reference: torch.Tensor, beta: float = 0.01, ratio: float = 1.0) -> torch.Tensor:
    """Fourier domain adaptation (Yang & Soatto 2020): x with the reference's low-frequency amplitude.

    ratio 1 replaces the box (FDA); ratio λ < 1 interpolates (FedDG-style continuous mixing).
    `reference` is a volume batch of x's spatial shape (N or 1 samples).
    """
    ref_amp, _ = amplitude_phase(reference)
    return mix_amplitude(x, ref_amp, beta, ratio)


def tp_ram_ratios(n: int, progress: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """MiDSS mix ratios r ~ U(0, t/T), one per sample: mixing grows with the training progress t/T."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress t/T must be in [0, 1], got {progress}")
    return torch.rand(n, generator=generator) * progress


def tp_ram(
    x: torch.Tensor,
    reference: torch.Tensor,
    progress: float,
    beta: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-process-aware random amplitude mixup (MiDSS): labeled x takes the low-frequency
    amplitude of unlabeled `reference` with ratio r ~ U(0, t/T) per sample. Returns (mixed, r)."""
    r = tp_ram_ratios(x.shape[0], progress, generator).to(x.device)
    ref_amp, _ = amplitude_phase(reference)
    return mix_amplitude(x, ref_amp, beta, r), r
