"""Loss-weight ramp-up over training (Laine & Aila 2017, as used by mean teacher, UA-MT, MiDSS)."""

from __future__ import annotations

import math


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(-5 (1 - t)^2) with t = progress / length clipped to [0, 1]; 1 from `progress >= length`."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
