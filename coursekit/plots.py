"""Every figure of the course. Each function returns a matplotlib Figure and works headless.

Figures are closed in pyplot before they are returned, so a notebook shows each one exactly once
(as the cell's result) and a script or test never opens a window.
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.patches  # noqa: F401  (used by plot_bit_layout)
import matplotlib.pyplot as plt
import matplotlib.ticker  # noqa: F401  (used by plot_size_vs_quality)
import torch

from . import checks, quant

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
    ax.legend(fontsize=8, loc="best")
    return _done(fig)


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


def plot_memory_bars(sizes: dict, limit_bytes: float | None = None, limit_label: str = "limit",
                     title: str = "Memory"):
    """Horizontal bars of sizes in bytes ({label: bytes}), with an optional limit line (e.g. a GPU)."""
    if not sizes:
        checks.fail("sizes", "a non-empty {label: number of bytes}", "an empty one")
    labels = list(sizes)
    gb = [sizes[k] / 1e9 for k in labels]
    unit, scale = ("GB", 1.0) if max(gb) >= 1 else ("MB", 1e3)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.4))
    bars = ax.barh(labels, [v * scale for v in gb], color=COLORS["original"], zorder=2)
    for bar, v in zip(bars, gb):
        # on a white box above the limit line, so a label that ends past the line stays readable
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v * scale:.3g} {unit}",
                va="center", fontsize=8, zorder=4,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.9))
    ax.set_xlim(0, max(gb) * scale * 1.18)
    if limit_bytes is not None:
        ax.axvline(limit_bytes / 1e9 * scale, color=COLORS["sign"], ls="--", label=limit_label, zorder=3)
        ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    return _done(fig)


def plot_memory_traces(traces: dict, marks: dict | None = None, title: str = "Memory while loading",
                       private_label: str = "private", total_label: str = "incl. mapped file"):
    """Memory over time for several calls ({label: memory.MemoryTrace}), in MB above the start.

    One colour per call; a solid line for private memory and a dashed one for the total (which on a
    CPU includes memory-mapped file pages). ``marks`` ({label: bytes}) draws dotted reference levels,
    e.g. the size of the fp32 and bf16 models.
    """
    if not traces:
        checks.fail("traces", "a non-empty {label: MemoryTrace}", "an empty one")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, (label, trace) in enumerate(traces.items()):
        ms = [t * 1e3 for t in trace.seconds]
        ax.plot(ms, [b / 1e6 for b in trace.private], color=f"C{i}", lw=1.8, label=f"{label}: {private_label}")
        ax.plot(ms, [b / 1e6 for b in trace.total], color=f"C{i}", lw=1, ls="--", label=f"{label}: {total_label}")
    for j, (label, nbytes) in enumerate((marks or {}).items()):
        ax.axhline(nbytes / 1e6, color=COLORS["grid"], ls=":", lw=1)
        ax.text(1.0, nbytes / 1e6, f" {label}", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.set_xlabel("time since the call started (ms)")
    ax.set_ylabel("memory above the start (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _done(fig)


def plot_bit_layout(dtypes=(torch.float32, torch.float16, torch.bfloat16)):
    """One row of boxes per float dtype: sign, exponent and mantissa bits, to scale."""
    from .dtypes import float_layout
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


def plot_roofline(points: dict, bandwidth_gb_s: float, peaks_gflops: dict, measured: dict | None = None,
                  title: str = ""):
    """The roofline of a machine, with workloads placed at their arithmetic intensity.

    A kernel that does F flops while moving B bytes has arithmetic intensity I = F / B (flop per
    byte). It cannot run faster than the memory delivers bytes, I x bandwidth, nor faster than the
    arithmetic units, the peak: attainable GFLOP/s = min(peak, I x bandwidth). Left of the *ridge*
    (peak / bandwidth) a workload is memory-bound, right of it compute-bound.

    ``points`` is {label: (intensity, roof)}: each is drawn on the roof named ``roof``, a key of
    ``peaks_gflops`` ({roof: GFLOP/s}, e.g. a measured fp32 and bf16 matmul). ``measured`` adds
    achieved performance as hollow markers, {label: (intensity, GFLOP/s)}. Both axes are
    logarithmic: the memory roof is then a line of slope 1.
    """
    if not points:
        checks.fail("points", "a non-empty {label: (flop per byte, roof)}", "an empty one")
    if not peaks_gflops:
        checks.fail("peaks_gflops", "a non-empty {roof: GFLOP/s}", "an empty one")
    checks.check_number(bandwidth_gb_s, "bandwidth_gb_s", positive=True)
    for roof, peak in peaks_gflops.items():
        checks.check_number(peak, f"peaks_gflops[{roof!r}]", positive=True)
    for label, (intensity, roof) in points.items():
        checks.check_number(intensity, f"points[{label!r}] intensity", positive=True)
        checks.check_choice(roof, f"points[{label!r}] roof", peaks_gflops)
    measured = measured or {}
    ridges = {roof: peak / bandwidth_gb_s for roof, peak in peaks_gflops.items()}
    xs = [i for i, _ in points.values()] + [i for i, _ in measured.values()] + list(ridges.values())
    lo, hi = min(xs) / 3, max(xs) * 3
    grid = [lo * (hi / lo) ** (k / 200) for k in range(201)]
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    roof_color = {roof: f"C{i}" for i, roof in enumerate(peaks_gflops)}
    for roof, peak in peaks_gflops.items():
        ax.plot(grid, [min(peak, x * bandwidth_gb_s) for x in grid], color=roof_color[roof], lw=2,
                label=f"roof: {roof} ({peak:.3g} GFLOP/s)")
        ax.axvline(ridges[roof], color=roof_color[roof], ls=":", lw=1)
        ax.annotate(f"ridge {ridges[roof]:.3g} flop/B", (ridges[roof], peak), textcoords="offset points",
                    xytext=(4, -12), fontsize=7, color=roof_color[roof])
    markers = "osD^vP*Xhp"
    style = {label: (markers[i % len(markers)], f"C{(i + len(peaks_gflops)) % 10}")   # a label looks alike
             for i, label in enumerate(dict.fromkeys([*points, *measured]))}          # in both sets
    for label, (intensity, roof) in points.items():
        y = min(peaks_gflops[roof], intensity * bandwidth_gb_s)
        ax.scatter(intensity, y, s=50, marker=style[label][0], color=style[label][1], zorder=3,
                   edgecolors="white", linewidths=0.5, label=label)
    for label, (intensity, gflops) in measured.items():
        ax.scatter(intensity, gflops, s=50, marker=style[label][0], facecolors="none", edgecolors=style[label][1],
                   zorder=3, label=f"{label} (measured)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flop per byte moved)")
    ax.set_ylabel("attainable GFLOP/s")
    ax.set_title(title or f"Roofline: memory at {bandwidth_gb_s:.3g} GB/s", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _done(fig)


def plot_time_vs_floor(panels: dict, unit: str = "ms", title: str = ""):
    """Measured times against the least time possible, one panel per situation.

    ``panels`` is {panel title: {label: (time, floor)}}, e.g. {"batch 1": {"fp32": (27.0, 25.1)}}.
    Each label gets a bar for its time and a black tick at its floor (for memory-bound work: its
    bytes / the measured bandwidth), with the ratio written beside it. Times are drawn on a
    logarithmic axis so that panels whose times differ a hundredfold stay readable.
    """
    if not panels:
        checks.fail("panels", "a non-empty {panel title: {label: (time, floor)}}", "an empty one")
    for panel, rows in panels.items():
        if not rows:
            checks.fail(f"panels[{panel!r}]", "a non-empty {label: (time, floor)}", "an empty one")
    for rows in panels.values():
        for label, (t, floor) in rows.items():
            checks.check_number(t, f"time of {label!r}", positive=True)
            checks.check_number(floor, f"floor of {label!r}", positive=True)
    n_rows = max(len(rows) for rows in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.45 * n_rows + 1.6), squeeze=False)
    for ax, (panel, rows) in zip(axes[0], panels.items()):
        labels = list(rows)
        times = [rows[k][0] for k in labels]
        floors = [rows[k][1] for k in labels]
        ax.barh(labels, times, color=COLORS["original"], alpha=0.85, label="measured")
        ax.scatter(floors, labels, marker="|", s=300, color="black", zorder=3, label="floor")
        for y, (t, floor) in enumerate(zip(times, floors)):
            ax.text(max(t, floor), y, f"  {t:.3g} {unit} ({t / floor:.1f}x floor)", va="center", fontsize=7)
        ax.set_xscale("log")
        lo, hi = min(times + floors), max(times + floors)
        ax.set_xlim(lo / 2, hi * 12)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3, axis="x", which="both")
    axes[0][0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
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
