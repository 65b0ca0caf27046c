"""A tensor against the grid it was quantized to: the error heatmaps and the histograms with the
representable values drawn over them (notebooks 03, 05, 12).
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker  # noqa: F401  (matplotlib.ticker formatters)
import matplotlib.pyplot as plt
import torch

from .. import checks, quant
from .style import COLORS, _done, _decimals, _heatmap

__all__ = ["plot_quantization_error", "plot_histogram_with_grid", "plot_grids_on_histogram"]


def plot_quantization_error(x: torch.Tensor, q, dequantized: torch.Tensor | None = None,
                            decimals: int | None = None):
    """Four heatmaps: the original, the integer codes, the dequantized values and |error|.

    Pass a QTensor as `q`, or the codes and the dequantized tensor separately. Small tensors get
    their values written in the cells, in black or white after the cell's colour; original and
    dequantized share one colour scale and `decimals` (default: the largest value to 4 significant
    digits), so a value that moved shows a different number.
    """
    if isinstance(q, quant.QTensor):
        codes, dequantized = q.data, q.dequantize()
    elif isinstance(q, torch.Tensor) and isinstance(dequantized, torch.Tensor):
        codes = q
    else:
        checks.fail("q", "a QTensor, or integer codes passed together with `dequantized`", type(q).__name__,
                    TypeError)
    x, dequantized = x.detach().float().cpu(), dequantized.detach().float().cpu()
    mse = quant.quantization_error(x, dequantized)
    if decimals is None:   # the largest value with 4 significant digits: enough to see every change
        decimals = _decimals(x, 4)
    lo, hi = float(torch.minimum(x.min(), dequantized.min())), float(torch.maximum(x.max(), dequantized.max()))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    _heatmap(axes[0], x, "original", decimals=decimals, vmin=lo, vmax=hi)
    _heatmap(axes[1], codes, "integer codes", cmap="cividis")
    _heatmap(axes[2], dequantized, "dequantized (the original's colour scale)", decimals=decimals,
             vmin=lo, vmax=hi)
    _heatmap(axes[3], (x - dequantized).abs(), "|error| = |original - dequantized|", cmap="magma")
    fig.suptitle(f"Quantization error: MSE = {mse:.4g}")
    return _done(fig)


def plot_histogram_with_grid(x: torch.Tensor, q: "quant.QTensor", bins: int = 100, max_grid_lines: int = 64,
                             logy: bool = True, label: str | None = None):
    """Histogram of x with the values the quantized tensor can represent (its grid), and the
    histogram of the dequantized values.

    One block (per tensor): the grid is drawn as grey vertical lines over the histogram. Several
    blocks (per channel, per group): every block has its own grid, so a strip under the histogram
    draws each one, one row per block, on the same value axis. `logy` (default) counts on a log
    scale, so neither the dequantized values (all piled on a few levels) nor a spike in the data
    (the zeros of a ReLU) squash the rest of the distribution. `label` names the tensor in the title.
    """
    checks.check_instance(q, "q", quant.QTensor, "a QTensor (the output of quantize)")
    values = x.detach().float().reshape(-1).cpu()
    deq = q.dequantize().float().reshape(-1).cpu()
    scale = q.scale.float().reshape(-1).cpu()
    zero = q.zero_point.float().reshape(-1).cpu()
    n_blocks = scale.numel()
    qmin, qmax = quant.qrange(q.bits)
    step = max(1, (qmax - qmin + 1) // max_grid_lines)
    codes = torch.arange(qmin, qmax + 1, step, dtype=torch.float32)
    grids = scale[:, None] * (codes[None, :] - zero[:, None])          # (n_blocks, levels drawn)
    levels = (f"{2 ** q.bits} levels" + (f", every {step}th drawn" if step > 1 else "")
              + (" per block" if n_blocks > 1 else ""))

    lo = min(float(values.min()), float(deq.min()), float(grids.min()))
    hi = max(float(values.max()), float(deq.max()), float(grids.max()))
    edges = torch.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1).numpy()
    if n_blocks == 1:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        strip = None
    else:
        strip_height = min(2.8, 1.2 + n_blocks / 40)                       # inches: more blocks, taller
        fig, (ax, strip) = plt.subplots(2, 1, figsize=(9, 3.6 + strip_height), sharex=True,
                                        gridspec_kw={"height_ratios": [3, strip_height]})
    ax.hist(values.numpy(), bins=edges, color=COLORS["original"], alpha=0.6, label="original values", log=logy)
    if strip is None:
        for g in grids[0].tolist():
            ax.axvline(g, color=COLORS["grid"], lw=0.6, alpha=0.7)
        ax.plot([], [], color=COLORS["grid"], lw=0.6, label=f"grid: {levels}")
    else:
        ax.plot([], [], color=COLORS["grid"], lw=0.6, label=f"grid (each block's, below): {levels}")
        strip.eventplot(grids.numpy(), orientation="horizontal", lineoffsets=range(n_blocks),
                        linelengths=0.8 if n_blocks <= 32 else 1.0, linewidths=0.8, colors="#333333")
        strip.set_ylim(n_blocks - 0.5, -0.5)                               # block 0 on top
        strip.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if q.granularity == "per_group":
            kind = "group"
        else:
            kind = {0: "row", 1: "column"}.get(q.blocking.axis, "channel") if x.dim() == 2 else "channel"
        strip.set_ylabel(f"block ({kind})", fontsize=8)
        strip.set_title(f"the grid of each of the {n_blocks} blocks (one {kind} per line)", fontsize=9)
        strip.tick_params(labelsize=7)
        strip.set_xlabel("value")
    ax.hist(deq.numpy(), bins=edges, histtype="step", color=COLORS["dequantized"], lw=1.5, label="dequantized",
            log=logy)
    mse = quant.quantization_error(values, deq)
    mode = "symmetric" if q.symmetric else "asymmetric"
    name = f"{label}: " if label else ""
    ax.set_title(f"{name}{q.bits}-bit {mode}, {q.granularity}: MSE = {mse:.3g}", fontsize=10)
    if strip is None:
        ax.set_xlabel("value")
    ax.set_ylabel("count (log scale)" if logy else "count")
    if logy:
        ax.set_ylim(bottom=0.7)
        # Plain tick labels ("1", "10", "100"), not matplotlib's mathtext 10^n: the quantization
        # explorer redraws this figure inside a widget callback, where mathtext's parser failed
        # about one redraw in ten in JupyterLab (ParseException on a tick label; never in a cell).
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8, loc="best")
    return _done(fig)


def plot_grids_on_histogram(values: torch.Tensor, grids: dict, bins: int = 120, title: str = "",
                            xlabel: str = "weight / its block's largest magnitude"):
    """One panel per format: the histogram of ``values`` with that format's levels as vertical lines.

    grids: {label: 1-D tensor of the values the format can represent, in the units of ``values``}.
    """
    checks.check_tensor(values, "values")
    checks.check_instance(grids, "grids", dict, "a dict {label: levels}")
    if not grids:
        checks.fail("grids", "a non-empty dict {label: levels}", "an empty one")
    v = values.detach().float().reshape(-1).cpu().numpy()
    cols = min(3, len(grids))
    rows = -(-len(grids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    for ax, (label, levels) in zip(axes.flat, grids.items()):
        ax.hist(v, bins=bins, color=COLORS["original"], alpha=0.6)
        for g in torch.as_tensor(levels).reshape(-1).tolist():
            ax.axvline(g, color=COLORS["dequantized"], lw=0.9, alpha=0.9)
        ax.set_title(f"{label}: {len(torch.as_tensor(levels).unique())} levels", fontsize=9)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(grids):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _done(fig)
