"""How the error grows as bits shrink, per granularity, per row, and per bit of storage: the
measurements behind each lesson's "which grid is better" (notebooks 03, 05, 06, 07 and 12).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import checks, quant
from .style import COLORS, _done, _as_2d

__all__ = ["error_vs_bits", "plot_error_vs_bits", "plot_error_vs_granularity", "plot_error_per_row",
           "plot_error_per_layer", "plot_error_vs_bits_per_weight"]


def error_vs_bits(x: torch.Tensor, configs: dict, bits=range(2, 9)) -> dict:
    """MSE of quantize(x, bits=b, **config) for every config and bit width: {label: {bits: mse}}."""
    return {label: {b: quant.quantization_error(x, quant.quantize(x, bits=b, **cfg)) for b in bits}
            for label, cfg in configs.items()}


def plot_error_vs_bits(x: torch.Tensor, configs: dict | None = None, bits=range(2, 9), title: str | None = None):
    """MSE against bit width (log scale), one line per quantization config; `title` names what x is."""
    configs = configs or {"asymmetric": {}, "symmetric": {"symmetric": True}}
    results = error_vs_bits(x, configs, bits)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, by_bits in results.items():
        ax.plot(list(by_bits), list(by_bits.values()), marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("bits")
    ax.set_ylabel("mean squared error")
    ax.set_title(title or "Quantization error against bit width", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _done(fig)


def plot_error_vs_granularity(x: torch.Tensor, configs: dict, bits: int = 4):
    """Two bar charts for the same tensor: MSE and effective bits per value (scales included)."""
    labels, errors, costs = [], [], []
    for label, cfg in configs.items():
        q = quant.quantize(x, bits=bits, **cfg)
        labels.append(label)
        errors.append(quant.quantization_error(x, q))
        costs.append(q.bits_per_value)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.bar(labels, errors, color=COLORS["original"])
    ax1.set_yscale("log")
    ax1.set_title(f"{bits}-bit quantization error (MSE)", fontsize=10)
    ax2.bar(labels, costs, color=COLORS["dequantized"])
    ax2.axhline(bits, color="black", lw=0.8, ls="--")
    ax2.set_title("storage: bits per value, scales and zero points included", fontsize=10)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    return _done(fig)


def plot_error_per_row(weight: torch.Tensor, variants: dict, title: str = ""):
    """Where the error of a quantized matrix lands, row by row: one point per row of `weight`, at
    the row's largest |value| (x) and the row's RMS error, the square root of its MSE (y).

    `variants` is {label: QTensor or dequantized tensor of weight's shape}. With one scale for the
    whole matrix every row pays the step set by the largest value of the matrix (a flat band); with
    one scale per row, each row pays a step set by its own largest value (points rising with x).
    """
    if not variants:
        checks.fail("variants", "a non-empty {label: QTensor or dequantized tensor}", "an empty one")
    w = _as_2d(weight)
    row_max = w.abs().amax(dim=1)
    markers = "os^vD"
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, (label, v) in enumerate(variants.items()):
        deq = v.dequantize() if isinstance(v, quant.QTensor) else v
        deq = _as_2d(deq)
        if deq.shape != w.shape:
            checks.fail(f"variants[{label!r}]", f"a tensor of shape {tuple(w.shape)}", f"shape {tuple(deq.shape)}")
        row_rms = (w - deq).pow(2).mean(dim=1).sqrt()
        mse = quant.quantization_error(w, deq)
        ax.scatter(row_max.numpy(), row_rms.numpy(), s=12, alpha=0.7, marker=markers[i % len(markers)],
                   label=f"{label} (MSE of the matrix {mse:.3g})")
    ax.set_xlabel("largest |weight| in the row")
    ax.set_ylabel("RMS error of the row")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Error per row of a {w.shape[0]} x {w.shape[1]} matrix, one point per row", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _done(fig)


def _short_layer_name(name: str) -> str:
    """'model.layers.3.mlp.down_proj' -> '3.down_proj': the block's number and the layer's own name."""
    parts = name.split(".")
    number = next((p for p in parts if p.isdigit()), None)
    return f"{number}.{parts[-1]}" if number is not None and parts[-1] != number else name


def plot_error_per_layer(errors: dict, ylabel: str = "relative error of the weight", title: str = "",
                         logy: bool = True):
    """One point per layer and variant: `errors` is {variant: {layer name: error}}, every variant over
    the same layers, drawn in the order of the first.

    The first variant is drawn as large open circles and each later one smaller and filled, so two
    quantizers that agree layer by layer show as dots inside circles, and one that is worse in every
    layer as a row of points above the others.
    """
    checks.check_instance(errors, "errors", dict, "a dict {variant: {layer name: error}}")
    if not errors:
        checks.fail("errors", "a non-empty dict {variant: {layer name: error}}", "an empty one")
    first_label, first = next(iter(errors.items()))
    checks.check_instance(first, f"errors[{first_label!r}]", dict, "a dict {layer name: error}")
    names = list(first)
    if not names:
        checks.fail(f"errors[{first_label!r}]", "a non-empty dict {layer name: error}", "an empty one")
    for label, series in errors.items():
        checks.check_instance(series, f"errors[{label!r}]", dict, "a dict {layer name: error}")
        if set(series) != set(names):
            checks.fail(f"errors[{label!r}]", f"the same {len(names)} layers as errors[{first_label!r}]",
                        f"{len(series)} layers, {len(set(series) ^ set(names))} of them not shared")
        bad = [n for n in names if not (isinstance(series[n], (int, float)) and series[n] >= 0)]
        if bad:
            checks.fail(f"errors[{label!r}][{bad[0]!r}]", "a number >= 0", repr(series[bad[0]]))
    x = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(max(7.5, 0.3 * len(names) + 2), 4.2))
    for k, (label, series) in enumerate(errors.items()):
        y = [series[n] for n in names]
        if k == 0:
            ax.scatter(x, y, s=70, facecolors="none", edgecolors=f"C{k}", linewidths=1.4, label=label, zorder=3)
        else:
            ax.scatter(x, y, s=max(8, 26 - 8 * (k - 1)), color=f"C{k}", label=label, zorder=3 + k)
    ax.set_xticks(x)
    ax.set_xticklabels([_short_layer_name(n) for n in names], rotation=90, fontsize=7)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("layer (block.name)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    # above the axes, in one row: inside, it would hide a layer's points whatever the corner
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(errors), frameon=False)
    ax.set_title(title or f"Error of each of {len(names)} layers", fontsize=10, pad=24)
    return _done(fig)


def plot_error_vs_bits_per_weight(points: dict, title: str = "Error against bits per weight",
                                  zoom_below: float = 6.0):
    """Each format as a point per model: {model: {format: (bits per weight, relative error)}}.

    Left: every format, log error. Right: a zoom on the formats under ``zoom_below`` bits per
    weight (the 4-bit crowd), each labelled beside the first model's point.
    """
    checks.check_instance(points, "points", dict, "a dict {model: {format: (bits, error)}}")
    if not points:
        checks.fail("points", "a non-empty dict {model: {format: (bits, error)}}", "an empty one")
    fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw=dict(width_ratios=[1, 1.3]))
    markers = ("o", "s", "^", "D")
    first = next(iter(points.values()))
    for k, (model, series) in enumerate(points.items()):
        for ax, keep in ((ax_all, lambda b: True), (ax_zoom, lambda b: b < zoom_below)):
            pts = [(b, e) for b, e in series.values() if keep(b)]
            ax.scatter([b for b, _ in pts], [e for _, e in pts], marker=markers[k % len(markers)], s=36,
                       label=model, zorder=3)
    wide = [(label, b, e) for label, (b, e) in first.items() if b >= zoom_below]
    for i, (label, b, e) in enumerate(wide):   # stacked, so that neighbours do not overprint
        ax_all.annotate(label, (b, e), textcoords="offset points", xytext=(-10, 8 + 11 * i), ha="right",
                        fontsize=7, arrowprops=dict(arrowstyle="-", color=COLORS["grid"], lw=0.6))
    crowd = sorted(((e, b, label) for label, (b, e) in first.items() if b < zoom_below), reverse=True)
    if crowd:
        top, bottom = crowd[0][0], crowd[-1][0]
        for i, (e, b, label) in enumerate(crowd):   # labels evenly spaced on the right, with a leader line
            y = top - (top - bottom) * i / max(1, len(crowd) - 1)
            ax_zoom.annotate(label, (b, e), xytext=(zoom_below - 0.05 * zoom_below, y), fontsize=7, va="center",
                             ha="right", arrowprops=dict(arrowstyle="-", color=COLORS["grid"], lw=0.6))
        ax_zoom.set_xlim(min(b for _, b, _ in crowd) - 0.1, zoom_below)
    ax_all.set_yscale("log")
    for ax in (ax_all, ax_zoom):
        ax.set_xlabel("bits per weight (every scale counted)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right" if ax is ax_all else "lower left")
    ax_all.set_ylabel("relative error  sum (w - w_q)^2 / sum w^2")
    ax_all.set_title("all formats (log scale)", fontsize=9)
    ax_zoom.set_title(f"under {zoom_below:g} bits per weight", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _done(fig)
