"""Per-site intensity statistics, side by side, drawn on a matplotlib Figure (no Qt here)."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..io.cohort import CaseInfo, site_stats


def site_colours(sites: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """One tab10 colour per site, in cohort order."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {site: cmap(i % 10) for i, site in enumerate(sites)}


def draw_site_stats(figure: Figure, infos: list[CaseInfo], text: str = "#f0f1f2", face: str = "#23242b") -> None:
    """Left: percentile curves (thin: cases, thick: site median). Right: each case's histogram."""
    figure.clear()
    figure.set_facecolor(face)
    pct_ax, hist_ax = figure.subplots(1, 2)
    medians = site_stats(infos)
    colours = site_colours(list(medians))
    for info in infos:
        colour = colours[info.case.site]
        levels = [int(k[1:]) for k in info.percentiles]
        pct_ax.plot(levels, list(info.percentiles.values()), color=colour, alpha=0.35, lw=0.8)
        counts, edges = info.histogram
        hist_ax.plot(0.5 * (edges[1:] + edges[:-1]), counts, color=colour, alpha=0.7, lw=0.9)
    for site, median in medians.items():
        levels = [int(k[1:]) for k in median]
        pct_ax.plot(levels, list(median.values()), color=colours[site], lw=2.2, marker="o", ms=3, label=site)
    pct_ax.set(title="intensity percentiles per site", xlabel="percentile", ylabel="intensity")
    hist_ax.set(title="histograms, p0.5 to p99.5", xlabel="intensity", ylabel="fraction of voxels (log)")
    hist_ax.set_yscale("log")  # background voxels would otherwise flatten every other bin
    for ax in (pct_ax, hist_ax):
        ax.set_facecolor(face)
        ax.tick_params(colors=text, labelsize=7)
        ax.title.set_color(text)
        ax.title.set_fontsize(8)
        for label in (ax.xaxis.label, ax.yaxis.label):
            label.set_color(text)
            label.set_fontsize(7)
        for spine in ax.spines.values():
            spine.set_color(text)
    if medians:
        legend = pct_ax.legend(fontsize=7, frameon=False)
        for entry in legend.get_texts():
            entry.set_color(text)
    pct_ax.set_xticks([1, 25, 50, 75, 99])
    figure.tight_layout()
