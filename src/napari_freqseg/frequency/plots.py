"""Matplotlib drawings of radial profiles and reliance curves, on a given Axes (no pyplot, no Qt):
the `freqseg` commands save them with the Agg canvas, the widgets show them in a Qt canvas."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .reliance import RelianceCurve
from .spectrum import RadialProfile

METRIC_LABEL = {"dice_drop": "Dice drop when the band is removed", "loss_rise": "loss rise when the band is removed"}


def draw_profiles(ax: Axes, profiles: Sequence[tuple[str, RadialProfile]], box_edges: Sequence[float] | None = None) -> None:
    """One log10-amplitude curve per (name, profile), legend with the names; `box_edges` (one per
    profile, cycles/mm) mark where each volume's low-frequency box ends."""
    ax.clear()
    for i, (name, prof) in enumerate(profiles):
        values = np.asarray(prof.values, dtype=float).reshape(-1)
        line = ax.plot(prof.frequency, np.log10(np.where(values > 0, values, np.nan)), label=name, lw=1.5)[0]
        if box_edges is not None and i < len(box_edges):
            ax.axvline(box_edges[i], color=line.get_color(), ls="--", lw=0.8)
    unit = profiles[0][1].unit if profiles else "cycles/mm"
    ax.set_xlabel(f"spatial frequency ({unit})")
    ax.set_ylabel("log10 amplitude")
    ax.grid(True, alpha=0.3)
    if profiles:
        ax.legend(fontsize="small", loc="upper right")


def draw_reliance(ax: Axes, curves: Sequence[tuple[str, RelianceCurve]]) -> None:
    """Per-band reliance as steps over the band edges, one curve per (name, curve)."""
    ax.clear()
    for name, curve in curves:
        edges = np.asarray(curve.edges)
        ax.stairs(curve.values, edges, label=name, lw=1.5)
    if curves:
        curve = curves[0][1]
        ax.set_xlabel(f"removed band ({curve.unit})")
        ax.set_ylabel(METRIC_LABEL.get(curve.metric, curve.metric))
        ax.legend(fontsize="small")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.grid(True, alpha=0.3)


def save_plot(path: str | Path, draw: Callable[[Axes], None], size: tuple[float, float] = (6.0, 4.0)) -> Path:
    """Draw on a fresh figure and save it (format from the file ending)."""
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    draw(fig.add_subplot(1, 1, 1))
    fig.tight_layout()
    fig.savefig(str(path))
    return Path(path)
