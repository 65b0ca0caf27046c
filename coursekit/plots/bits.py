"""Where the bits go: sign, exponent and mantissa boxes for torch's float dtypes and for the
low-precision formats that are not dtypes (notebooks 01 and 12).
"""

from __future__ import annotations

import matplotlib
import matplotlib.patches  # noqa: F401  (matplotlib.patches.Rectangle)
import matplotlib.pyplot as plt
import torch

from .. import checks
from .style import COLORS, _done

__all__ = ["plot_bit_layout", "plot_bit_fields"]


def plot_bit_layout(dtypes=(torch.float32, torch.float16, torch.bfloat16)):
    """One row of boxes per float dtype: sign, exponent and mantissa bits, to scale."""
    from ..dtypes import float_layout
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(dtypes) + 0.8))
    for row, dt in enumerate(dtypes):
        parts = zip(("sign", "exponent", "mantissa"), float_layout(dt))
        x0 = 0
        for part, n in parts:
            for i in range(n):
                ax.add_patch(matplotlib.patches.Rectangle((x0 + i, -row - 0.4), 0.92, 0.8,
                                                          color=COLORS[part]))
            if n:   # just the count inside: a 1-bit box has no room for a word (the legend names the parts)
                ax.text(x0 + n / 2 - 0.04, -row, str(n), ha="center", va="center", fontsize=9,
                        color="white", fontweight="bold")
            x0 += n
        ax.text(-0.6, -row, str(dt).replace("torch.", ""), ha="right", va="center", fontsize=9)
    ax.set_xlim(-6, 33)
    ax.set_ylim(-len(dtypes) + 0.4, 0.6)
    ax.axis("off")
    ax.legend(handles=[matplotlib.patches.Patch(color=COLORS[p], label=label) for p, label in
                       (("sign", "sign"), ("exponent", "exponent (range)"), ("mantissa", "mantissa (precision)"))],
              loc="lower right", fontsize=8, frameon=False)
    ax.set_title("Bit layout: how many bits each float type gives to sign, exponent and mantissa", fontsize=10)
    return _done(fig)


def plot_bit_fields(layouts: dict, title: str = "Bit layout of the low-precision formats"):
    """plot_bit_layout's boxes for formats that are not torch dtypes: {name: (sign, exponent, mantissa)}.

    A format that is only an index (NF4's 4 bits pick one of 16 levels) is given as (0, 0, n) with
    the name saying so; E8M0 is (0, 8, 0): an exponent and nothing else.
    """
    checks.check_instance(layouts, "layouts", dict, "a dict {name: (sign, exponent, mantissa)}")
    if not layouts:
        checks.fail("layouts", "a non-empty dict {name: (sign, exponent, mantissa)}", "an empty one")
    width = max(sum(v) for v in layouts.values())
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(layouts) + 0.9))
    for row, (name, fields) in enumerate(layouts.items()):
        x0 = 0
        for part, n in zip(("sign", "exponent", "mantissa"), fields):
            for i in range(n):
                ax.add_patch(matplotlib.patches.Rectangle((x0 + i, -row - 0.4), 0.92, 0.8, color=COLORS[part]))
            if n:
                ax.text(x0 + n / 2 - 0.04, -row, str(n), ha="center", va="center", fontsize=9,
                        color="white", fontweight="bold")
            x0 += n
        ax.text(-0.4, -row, name, ha="right", va="center", fontsize=9)
    ax.set_xlim(-7, width + 0.5)
    ax.set_ylim(-len(layouts) + 0.4, 0.6)
    ax.axis("off")
    ax.legend(handles=[matplotlib.patches.Patch(color=COLORS[p], label=label) for p, label in
                       (("sign", "sign"), ("exponent", "exponent"), ("mantissa", "mantissa / index"))],
              loc="lower right", fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _done(fig)
