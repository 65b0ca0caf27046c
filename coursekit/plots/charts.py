"""Plain charts the lessons fill with their own numbers: lines, bars and a row of heatmaps.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker  # noqa: F401  (matplotlib.ticker formatters)
import matplotlib.pyplot as plt

from .. import checks
from .style import COLORS, _done, _as_2d

__all__ = ["plot_lines", "plot_bars", "plot_heatmaps"]


def plot_lines(series: dict, xlabel: str, ylabel: str, title: str = "", hlines: dict | None = None,
               logy: bool = False, styles: dict | None = None):
    """A generic line chart: {label: (xs, ys)}, with optional horizontal reference lines {label: y}.

    ``styles`` ({label: matplotlib keywords, e.g. dict(color="C0", ls="--")}) groups related lines:
    one colour per dtype and one line style per method reads faster than a colour per line.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", ms=3, label=label, **(styles or {}).get(label, {}))
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", lw=1, color=f"C{i + len(series)}", label=label)
    if logy:
        ax.set_yscale("log")
        # plain numbers (50, 100, 200), not powers of ten: a learner reads perplexities off this axis
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.1g}"[0] in "25" else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _done(fig)


def plot_bars(values: dict, ylabel: str, title: str = "", logy: bool = False, horizontal: bool = False):
    """A generic bar chart {label: value}, each bar labelled with its value.

    ``horizontal`` lays the bars on their side, for many bars or long labels (one per layer);
    ``ylabel`` then names the value axis, which is horizontal.
    """
    if horizontal:
        labels = list(values)
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(labels) + 1.2))
        bars = ax.barh(labels, list(values.values()), color=COLORS["original"])
        for bar, v in zip(bars, values.values()):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.2g} " if v >= 0 else f"{v:.2g} ",
                    va="center", ha="left" if v >= 0 else "right", fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(ylabel)
        ax.margins(x=0.15)
        ax.set_title(title, fontsize=10)
        return _done(fig)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.bar(list(values), list(values.values()), color=COLORS["original"])
    for bar, v in zip(bars, values.values()):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.3g}", ha="center",
                va="bottom", fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=20)
    return _done(fig)


def plot_heatmaps(panels: dict, title: str = "", cmap: str = "magma", shared_scale: bool = True):
    """Heatmaps side by side, one per {label: 2-D tensor}, on one colour scale so they compare.

    Used to show where the error lands (e.g. |error| of one slice under several granularities).
    """
    if not panels:
        checks.fail("panels", "a non-empty {label: 2-D tensor}", "an empty one")
    values = {label: _as_2d(t) for label, t in panels.items()}
    vmax = max(float(v.max()) for v in values.values()) if shared_scale else None
    fig, axes = plt.subplots(1, len(values), figsize=(3.4 * len(values) + 0.8, 3.6), squeeze=False,
                             layout="constrained")
    for ax, (label, v) in zip(axes[0], values.items()):
        im = ax.imshow(v.numpy(), cmap=cmap, aspect="auto", vmin=0.0 if shared_scale else None, vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("column (input channel)", fontsize=8)
        ax.set_ylabel("row (output channel)", fontsize=8)
        ax.tick_params(labelsize=7)
        if not shared_scale:
            fig.colorbar(im, ax=ax, fraction=0.046)
    if shared_scale:
        fig.colorbar(im, ax=list(axes[0]), fraction=0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    plt.close(fig)   # constrained layout instead of _done's tight_layout: it handles the shared colorbar
    return fig
