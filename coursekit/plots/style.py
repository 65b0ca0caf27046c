"""The look every figure shares: the course's colours, legible text on any cell, heatmaps, and
``_done``, which lays a figure out and closes it in pyplot so a notebook shows it exactly once.
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import torch

__all__ = ["COLORS", "contrast_ratio", "text_color_on"]


COLORS = {"sign": "#e15759", "exponent": "#4e79a7", "mantissa": "#59a14f",
          "original": "#4e79a7", "dequantized": "#f28e2b", "grid": "#9c9c9c"}


def _done(fig):
    fig.tight_layout()
    plt.close(fig)
    return fig


def _as_2d(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float().cpu()
    return t.reshape(1, -1) if t.dim() < 2 else t.reshape(t.shape[0], -1)


def _luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour (components in 0..1)."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(fg, bg) -> float:
    """WCAG contrast ratio of two colours (1 = none, 21 = black on white; 4.5 reads as body text)."""
    lf, lb = sorted((_luminance(matplotlib.colors.to_rgb(fg)), _luminance(matplotlib.colors.to_rgb(bg))))
    return (lb + 0.05) / (lf + 0.05)


def text_color_on(bg) -> str:
    """Black or white, whichever contrasts more with the background colour `bg`."""
    return "black" if contrast_ratio("black", bg) >= contrast_ratio("white", bg) else "white"


def _decimals(values: torch.Tensor, digits: int) -> int:
    """Decimals that show the largest |value| with `digits` significant digits (0 for integers)."""
    if not values.is_floating_point():
        return 0
    top = float(values.abs().max()) if values.numel() else 0.0
    return max(0, digits - 1 - math.floor(math.log10(top))) if top > 0 else 0


def _heatmap(ax, values, title, cmap="viridis", annotate=True, decimals=None, vmin=None, vmax=None):
    floating = values.is_floating_point()
    values = _as_2d(values)
    im = ax.imshow(values.numpy(), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if annotate and values.numel() <= 36:
        if decimals is None:
            decimals = _decimals(values, 3) if floating else 0
        for (i, j), v in zip(((i, j) for i in range(values.shape[0]) for j in range(values.shape[1])),
                             values.reshape(-1).tolist()):
            # the text colour follows the cell's colour, so every number stays legible
            ax.text(j, i, f"{v:.{decimals}f}", ha="center", va="center", fontsize=8,
                    color=text_color_on(im.cmap(im.norm(v))))
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
