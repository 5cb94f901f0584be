"""dL/d(amplitude) from dL/dx: what L-AAE and F-ASE both read, computed once per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bands import spatial_ndim
from .spectrum import amplitude_phase, recompose


@dataclass
class AmplitudeGrad:
    """A batch's half-grid amplitude and phase, and the loss gradient with respect to the amplitude."""

    amplitude: torch.Tensor
    phase: torch.Tensor
    grad: torch.Tensor
    shape: tuple[int, ...]  # spatial shape of the volumes


def amplitude_gradient(x: torch.Tensor, grad_x: torch.Tensor) -> AmplitudeGrad:
    """From x and dL/dx (e.g. `x.grad` after the training backward pass): one rfftn, and one
    irfftn/rfftn pair through autograd. No network pass."""
    nd = spatial_ndim(x)
    shape = tuple(x.shape[-nd:])
    amp, phase = amplitude_phase(x.detach())
    with torch.enable_grad():
        a = amp.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(recompose(a, phase, shape), a, grad_outputs=grad_x.to(amp.dtype))
    return AmplitudeGrad(amplitude=amp, phase=phase, grad=g, shape=shape)
