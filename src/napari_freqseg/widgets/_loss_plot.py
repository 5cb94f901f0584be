"""The live loss curve of a fine-tuning run on a matplotlib Figure (no Qt here).

The axes, lines and legend are made once; an update only replaces the lines' data and the axis
limits, so that redrawing after each iteration stays far below the GUI's 100 ms budget (clearing
and laying out the figure again took 70-180 ms per update on the project's machines).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: Curves drawn, with their colours: the total loss and its two parts.
CURVES = {"loss": "#f0f1f2", "slices": "#33dd55", "consistency": "#5aa9ff"}


class LossPlot:
    """Loss per iteration (total, corrected slices, consistency) on `figure`."""

    def __init__(self, figure: Figure, text: str = "#f0f1f2", face: str = "#23242b") -> None:
        figure.set_facecolor(face)
        figure.subplots_adjust(left=0.12, right=0.97, bottom=0.36, top=0.84)
        self.ax = ax = figure.add_subplot()
        ax.set_facecolor(face)
        self.lines = {key: ax.plot([], [], color=colour, lw=1.4 if key == "loss" else 1.0, marker="o", ms=2.5, label=key)[0]
                      for key, colour in CURVES.items()}  # fmt: skip
        ax.set_xlabel("iteration", color=text, fontsize=7, labelpad=1)
        ax.set_ylabel("loss", color=text, fontsize=7)
        ax.tick_params(colors=text, labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for spine in ax.spines.values():
            spine.set_color(text)
        legend = ax.legend(fontsize=7, frameon=False, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 0.98))
        for entry in legend.get_texts():
            entry.set_color(text)
        self.update([])

    def update(self, history: list[dict[str, float]]) -> None:
        """Show `history` (one dict per iteration with 'iteration' and each curve's key)."""
        iterations = [h["iteration"] for h in history]
        for key, line in self.lines.items():
            line.set_data(iterations, [h[key] for h in history])
            line.set_marker("o" if len(history) < 40 else "")
        top = max((max(h[k] for k in CURVES) for h in history), default=1.0)
        self.ax.set_xlim(0.5, max(iterations, default=1) + 0.5)
        self.ax.set_ylim(0.0, 1.05 * top if top > 0 else 1.0)
