"""The live loss curve of a fine-tuning run, drawn on a matplotlib Figure (no Qt here)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: Curves drawn, with their colours: the total loss and its two parts.
CURVES = {"loss": "#f0f1f2", "slices": "#33dd55", "consistency": "#5aa9ff"}


def draw_losses(figure: Figure, history: list[dict[str, float]], text: str = "#f0f1f2", face: str = "#23242b") -> None:
    """Loss per iteration: total, corrected slices, consistency (one point per iteration)."""
    figure.clear()
    figure.set_facecolor(face)
    ax = figure.subplots()
    ax.set_facecolor(face)
    iterations = [h["iteration"] for h in history]
    for key, colour in CURVES.items():
        ax.plot(iterations, [h[key] for h in history], color=colour, lw=1.4 if key == "loss" else 1.0,
                marker="o" if len(history) < 40 else None, ms=2.5, label=key)  # fmt: skip
    ax.set_xlabel("iteration", color=text, fontsize=7)
    ax.set_ylabel("loss", color=text, fontsize=7)
    ax.tick_params(colors=text, labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for spine in ax.spines.values():
        spine.set_color(text)
    if history:
        ax.set_xlim(0.5, max(iterations) + 0.5)
        ax.set_ylim(bottom=0)
        legend = ax.legend(fontsize=7, frameon=False, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        for entry in legend.get_texts():
            entry.set_color(text)
    else:
        ax.text(0.5, 0.5, "loss appears here while fine-tuning", ha="center", va="center", color=text, fontsize=8,
                transform=ax.transAxes)  # fmt: skip
    figure.tight_layout(pad=0.4)
