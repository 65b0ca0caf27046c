"""Activation outliers: the few input channels whose range dwarfs the others, layer by layer
(notebook 11, the reason for LLM.int8() and SmoothQuant).
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from .. import checks
from .style import COLORS, _done

__all__ = ["plot_outlier_channels"]


def plot_outlier_channels(ranges: dict, top: int = 5, title: str = "max |x| of each input channel, by layer"):
    """Per-channel activation ranges of several layers (name -> 1-D tensor of max |x| per channel).

    One row per layer, channels along x, log scale: persistent outlier channels show up as spikes
    at the same places in every row; the ``top`` largest of each row are marked and labelled.
    """
    checks.check_instance(ranges, "ranges", dict, "a dict of layer name -> 1-D tensor")
    if not ranges:
        checks.fail("ranges", "at least one layer", "an empty dict")
    fig, axes = plt.subplots(len(ranges), 1, figsize=(10, 1.3 * len(ranges) + 0.8), sharex=True, squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], ranges.items()):
        r = r.detach().float().cpu()
        ax.bar(range(r.numel()), r.numpy(), width=1.0, color=COLORS["original"])
        idx = r.topk(min(top, r.numel())).indices
        ax.scatter(idx.numpy(), r[idx].numpy(), color=COLORS["sign"], s=14, zorder=3)
        for i in idx.tolist():
            ax.annotate(str(i), (i, float(r[i])), textcoords="offset points", xytext=(3, 2), fontsize=7)
        ax.axhline(float(r.median()), color=COLORS["grid"], lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("input channel (dashed: the median channel)")
    fig.suptitle(title, fontsize=10)
    return _done(fig)
