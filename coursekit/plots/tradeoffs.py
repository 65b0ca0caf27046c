"""Size against quality: each variant a point, the budget a line, and a zoom on the variants close
to the baseline, where the choice is made (notebook 04).
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker  # noqa: F401  (matplotlib.ticker formatters)
import matplotlib.pyplot as plt

from .. import checks
from .style import COLORS, _done

__all__ = ["plot_size_vs_quality"]


def plot_size_vs_quality(points: dict, ylabel: str = "perplexity (lower is better)", title: str = "",
                         baseline: str | None = None, budget: float | None = None, logy: bool = False,
                         zoom: float | None = None):
    """The trade-off of a quantization study: one point per variant, stored size (MB) against quality.

    ``points`` is {label: (nbytes, value)}; each point gets its own colour and legend entry (labels
    written next to the points would collide where variants cluster). ``baseline`` names the point
    drawn as a dashed reference line; ``budget`` (a fraction, e.g. 0.05) shades the band within
    that much of the baseline, so the variants worth shipping are the leftmost points inside it.
    ``zoom`` (a fraction, with ``baseline``) adds a second panel showing only the points within that
    much of the baseline, each labelled: variants a few tenths of a percent apart overlap otherwise.
    """
    if not points:
        checks.fail("points", "a non-empty {label: (nbytes, value)}", "an empty one")
    if baseline is not None:
        checks.check_choice(baseline, "baseline", points)
    if zoom is not None:
        if baseline is None:
            checks.fail("baseline", "the label of the reference point when zoom is given", "None")
        checks.check_number(zoom, "zoom", positive=True)
        fig, (ax, zax) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw=dict(width_ratios=(1, 1)))
    else:
        fig, ax = plt.subplots(figsize=(8.5, 4.2))
    markers = "osD^vP*Xhp"
    for i, (label, (nbytes, value)) in enumerate(points.items()):
        ax.scatter(nbytes / 1e6, value, s=55, color=f"C{i % 10}", marker=markers[i % len(markers)],
                   zorder=3, label=label, edgecolors="white", linewidths=0.5)
    if zoom is not None:
        _zoom_panel(zax, points, baseline, zoom, markers)
    if baseline is not None:
        ref = points[baseline][1]
        ax.axhline(ref, color=COLORS["grid"], ls="--", lw=1, label=f"{baseline} level")
        if budget is not None:
            ax.axhspan(ref, ref * (1 + budget), color=COLORS["mantissa"], alpha=0.15,
                       label=f"within {budget:.0%} of {baseline}")
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("model size (MB, as stored)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Size against quality: left and low is better", fontsize=10)
    ax.grid(alpha=0.3)
    if zoom is None:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        ax.legend(fontsize=8, loc="upper right")
    return _done(fig)


def _zoom_panel(ax, points, baseline, zoom, markers):
    """The points within `zoom` of the baseline, on a y-axis in percent of it, each one labelled."""
    ref = points[baseline][1]
    near = [(i, label, nbytes / 1e6, 100 * (value / ref - 1))
            for i, (label, (nbytes, value)) in enumerate(points.items()) if abs(value / ref - 1) <= zoom]
    for k, (i, label, mb, pct) in enumerate(sorted(near, key=lambda p: (p[2], p[3]))):
        ax.scatter(mb, pct, s=55, color=f"C{i % 10}", marker=markers[i % len(markers)], zorder=3,
                   edgecolors="white", linewidths=0.5)
        # labels take turns at four heights, with a leader line: neighbours at one size stay apart
        dy = (10, -14, 24, -28)[k % 4]
        ax.annotate(label, (mb, pct), xytext=(8, dy), textcoords="offset points", fontsize=7,
                    color=f"C{i % 10}", arrowprops=dict(arrowstyle="-", color=f"C{i % 10}", lw=0.6))
    ax.margins(y=0.25)
    ax.axhline(0, color=COLORS["grid"], ls="--", lw=1)
    ax.set_xlabel("model size (MB, as stored)")
    ax.set_ylabel(f"change vs {baseline} (%)")
    ax.set_title(f"Zoom: the variants within {zoom:.0%} of {baseline}", fontsize=10)
    ax.grid(alpha=0.3)
