"""UST-RUN's reliability-based sample selection: hardness and a queue of reliable samples.

Hardness of an unlabeled sample = 1 - Dice between the student's and the teacher's hard
predictions (mean over foreground classes), as in the authors' released code. Samples with
hardness below an adaptive threshold enter a bounded queue; they are later pasted into other
unlabeled volumes like labeled ones.
"""

from __future__ import annotations

from typing import Any

import torch


def hardness(student_labels: torch.Tensor, teacher_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N,) 1 - mean foreground Dice of two (N, D, H, W) label maps. A class absent from both
    counts as Dice 0, as in the released code: agreeing on an empty prediction is no evidence."""
    dices = []
    for c in range(1, n_classes):
        a, b = student_labels == c, teacher_labels == c
        inter = (a & b).flatten(1).sum(1).float()
        total = (a.flatten(1).sum(1) + b.flatten(1).sum(1)).float()
        dices.append(2 * inter / total.clamp_min(1))
    return 1 - torch.stack(dices).mean(dim=0)


class ReliableQueue:
    """At most `capacity` reliable samples (image, pseudo-label, confidence mask, hardness).

    A sample is admitted when its hardness is below the current threshold; when full, the least
    reliable samples leave first (the oldest among equals). After an admission the threshold drops
    to the hardest queued sample's hardness; after a step without one it grows by `growth`, up to
    `max_threshold` (the released code's rule, with its constants 0.1 and 1.0005).
    """

    def __init__(self, capacity: int = 20, max_threshold: float = 0.1, growth: float = 1.0005) -> None:
        self.capacity = capacity
        self.max_threshold = max_threshold
        self.growth = growth
        self.threshold = max_threshold
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None
        self.hardness = torch.zeros(0)

    def __len__(self) -> int:
        return 0 if self.images is None else self.images.shape[0]

    def offer(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, hardness: torch.Tensor) -> int:
        """Admit the samples below the threshold; returns how many were admitted."""
        keep = (hardness < self.threshold).cpu()
        n = int(keep.sum())
        if n == 0:
            self.threshold = min(self.threshold * self.growth, self.max_threshold)
            return 0
        new = [t[keep.to(t.device)].detach().clone() for t in (images, labels, masks)]
        h = hardness.detach().cpu()[keep].float()
        if self.images is not None:
            new = [torch.cat([a, b.to(a.device)]) for a, b in zip(new, (self.images, self.labels, self.masks))]
            h = torch.cat([h, self.hardness])
        # Our choice: evict the least reliable (released: the oldest), so the queue holds the best samples.
        order = torch.sort(h, stable=True).indices[: self.capacity]  # new samples first among equals
        self.images, self.labels, self.masks = (t[order.to(t.device)] for t in new)
        self.hardness = h[order]
        self.threshold = min(self.threshold, float(self.hardness.max()))
        return n

    def state_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "labels": self.labels,
            "masks": self.masks,
            "hardness": self.hardness,
            "threshold": self.threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.images, self.labels, self.masks = state["images"], state["labels"], state["masks"]
        self.hardness = state["hardness"]
        self.threshold = float(state["threshold"])
