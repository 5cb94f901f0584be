"""Augmentation methods of the whole-volume views and their defaults (no torch: the command line
reads them to build its help)."""

from __future__ import annotations

METHODS = ("fda", "tp-ram", "laae", "fase")
DEFAULT_BETA = {"fda": 0.01, "tp-ram": 0.01, "laae": 0.05, "fase": 0.05}
#: What --strength means per method, and its default.
STRENGTH = {
    "fda": ("mix ratio λ (1 = FDA's full replacement)", 1.0),
    "tp-ram": ("training progress t/T (ratio r ~ U(0, t/T))", 1.0),
    "laae": ("step size, in spread units", 1.0),
    "fase": ("reweighting strength s (0 = unchanged)", 1.0),
}
