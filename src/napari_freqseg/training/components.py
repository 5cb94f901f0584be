"""The contract between the training loop and the methods: a step context and loss components.

Every method (supervised, mean teacher, frequency shortcuts, boundary alignment, MiDSS/UST-RUN) is
one or more `Component`s. The loop builds a `StepContext` per iteration and sums the weighted
losses of the enabled components, so methods combine by listing them in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn


@dataclass
class StepContext:
    """What a component sees at one training iteration.

    Image tensors are (N, 1, D, H, W) float32, already intensity-normalised for the network
    (`x_*`); `raw_*` are the same patches in raw intensities, with per-sample normalisation
    statistics `stats_*` (N, 2) = (shift, scale) such that x = (raw - shift) / scale, for methods
    that work on raw intensities (FDA, TP-RAM). Labels are (N, D, H, W) int64.
    """

    iteration: int
    total_iterations: int
    student: nn.Module
    teacher: nn.Module | None
    n_classes: int
    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor | None = None
    raw_l: torch.Tensor | None = None
    raw_u: torch.Tensor | None = None
    stats_l: torch.Tensor | None = None
    stats_u: torch.Tensor | None = None
    site_l: torch.Tensor | None = None
    site_u: torch.Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # shared per-step results (e.g. teacher probabilities)
    input_grad: dict[str, torch.Tensor | None] = field(default_factory=dict)  # dL/dx_l ('l'), dL/dx_u ('u') of the first pass

    @property
    def progress(self) -> float:
        """Training progress t/T in [0, 1]."""
        return self.iteration / max(1, self.total_iterations)

    def student_logits(self, key: str = "l") -> torch.Tensor:
        """Student logits (with gradients) on the labeled ('l') or unlabeled ('u') batch, computed
        once per step and shared by the components that need them."""
        name = f"student_logits_{key}"
        if name not in self.cache:
            x = self.x_l if key == "l" else self.x_u
            if x is None:
                raise RuntimeError("this component needs unlabeled data")
            self.cache[name] = self.student(x)
        return self.cache[name]

    def teacher_probs(self, key: str = "u") -> torch.Tensor:
        """Teacher softmax on the clean unlabeled (key 'u') or labeled ('l') batch, computed once per step."""
        name = f"teacher_probs_{key}"
        if name not in self.cache:
            if self.teacher is None:
                raise RuntimeError("this component needs a teacher (enable mean_teacher)")
            x = self.x_u if key == "u" else self.x_l
            with torch.no_grad():
                self.cache[name] = torch.softmax(self.teacher(x), dim=1)
        return self.cache[name]


class Component(Protocol):
    """A loss term of the training objective. `loss` returns the (already weighted) scalar loss
    and floats to log; it may run extra forward passes of `ctx.student` (with gradients).

    Optional members the trainer uses when present:
    - `uses_input_gradient = True`: `loss` runs after a first backward pass of the other components,
      with the gradient of their loss with respect to the clean inputs in `ctx.input_grad`;
    - `after_step(ctx)`: called after the optimizer step and the teacher update (queues, statistics);
    - `state_dict()` / `load_state_dict(state)`: tensors and plain values saved in checkpoints, so
      that a resumed run continues exactly (e.g. F-ASE band weights, a sample queue).
    """

    name: str

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]: ...
