"""Every figure of the course. Each function returns a matplotlib Figure and works headless.

Figures are closed in pyplot before they are returned, so a notebook shows each one exactly once
(as the cell's result) and a script or test never opens a window.
"""

from __future__ import annotations

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


def _heatmap(ax, values, title, cmap="viridis", annotate=True):
    values = _as_2d(values)
    im = ax.imshow(values.numpy(), cmap=cmap, aspect="auto")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if annotate and values.numel() <= 36:
        for (i, j), v in zip(((i, j) for i in range(values.shape[0]) for j in range(values.shape[1])),
                             values.reshape(-1).tolist()):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=8, color="white")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


def plot_quantization_error(x: torch.Tensor, q, dequantized: torch.Tensor | None = None):
    """Four heatmaps: the original, the integer codes, the dequantized values and |error|.

    Pass a QTensor as `q`, or the codes and the dequantized tensor separately.
    """
    if isinstance(q, quant.QTensor):
        codes, dequantized = q.data, q.dequantize()
    elif isinstance(q, torch.Tensor) and isinstance(dequantized, torch.Tensor):
        codes = q
    else:
        checks.fail("q", "a QTensor, or integer codes passed together with `dequantized`", type(q).__name__,
                    TypeError)
    mse = quant.quantization_error(x.float(), dequantized.float())
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    _heatmap(axes[0], x, "original")
    _heatmap(axes[1], codes, "integer codes", cmap="cividis")
    _heatmap(axes[2], dequantized, "dequantized")
    _heatmap(axes[3], (x.float() - dequantized.float()).abs(), "|error|", cmap="magma")
    fig.suptitle(f"Quantization error: MSE = {mse:.4g}")
    return _done(fig)


def plot_histogram_with_grid(x: torch.Tensor, q: "quant.QTensor", bins: int = 100, max_grid_lines: int = 64):
    """Histogram of x with the values the quantized tensor can represent drawn as vertical lines.

    For per-channel or per-group quantization each block has its own grid; the lines show the grid
    of the block with the widest range.
    """
    checks.check_instance(q, "q", quant.QTensor, "a QTensor (the output of quantize)")
    values = x.detach().float().reshape(-1).cpu()
    deq = q.dequantize().float().reshape(-1).cpu()
    scale = q.scale.reshape(-1).cpu()
    zero = q.zero_point.reshape(-1).cpu()
    widest = int(torch.argmax(scale))
    qmin, qmax = quant.qrange(q.bits)
    grid = scale[widest] * (torch.arange(qmin, qmax + 1, dtype=torch.float32) - zero[widest])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.hist(values.numpy(), bins=bins, color=COLORS["original"], alpha=0.6, label="original values")
    step = max(1, len(grid) // max_grid_lines)
    for g in grid[::step].tolist():
        ax.axvline(g, color=COLORS["grid"], lw=0.6, alpha=0.7)
    ax.axvline(grid[0].item(), color=COLORS["grid"], lw=0.6, alpha=0.7,
               label=f"grid: {2 ** q.bits} levels" + (f" (every {step}th shown)" if step > 1 else ""))
    ax.hist(deq.numpy(), bins=bins, histtype="step", color=COLORS["dequantized"], lw=1.5, label="dequantized")
    mse = quant.quantization_error(values, deq)
    mode = "symmetric" if q.symmetric else "asymmetric"
    ax.set_title(f"{q.bits}-bit {mode}, {q.granularity}: MSE = {mse:.3g}", fontsize=10)
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8, loc="upper right")
    return _done(fig)


def error_vs_bits(x: torch.Tensor, configs: dict, bits=range(2, 9)) -> dict:
    """MSE of quantize(x, bits=b, **config) for every config and bit width: {label: {bits: mse}}."""
    return {label: {b: quant.quantization_error(x, quant.quantize(x, bits=b, **cfg)) for b in bits}
            for label, cfg in configs.items()}


def plot_error_vs_bits(x: torch.Tensor, configs: dict | None = None, bits=range(2, 9)):
    """MSE against bit width (log scale), one line per quantization config."""
    configs = configs or {"asymmetric": {}, "symmetric": {"symmetric": True}}
    results = error_vs_bits(x, configs, bits)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, by_bits in results.items():
        ax.plot(list(by_bits), list(by_bits.values()), marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("bits")
    ax.set_ylabel("mean squared error")
    ax.set_title("Quantization error against bit width", fontsize=10)
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


def plot_memory_bars(sizes: dict, limit_bytes: float | None = None, limit_label: str = "limit",
                     title: str = "Memory"):
    """Horizontal bars of sizes in bytes ({label: bytes}), with an optional limit line (e.g. a GPU)."""
    if not sizes:
        checks.fail("sizes", "a non-empty {label: number of bytes}", "an empty one")
    labels = list(sizes)
    gb = [sizes[k] / 1e9 for k in labels]
    unit, scale = ("GB", 1.0) if max(gb) >= 1 else ("MB", 1e3)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.4))
    bars = ax.barh(labels, [v * scale for v in gb], color=COLORS["original"])
    for bar, v in zip(bars, gb):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v * scale:.3g} {unit}",
                va="center", fontsize=8)
    if limit_bytes is not None:
        ax.axvline(limit_bytes / 1e9 * scale, color=COLORS["sign"], ls="--", label=limit_label)
        ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
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
               logy: bool = False):
    """A generic line chart: {label: (xs, ys)}, with optional horizontal reference lines {label: y}."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", ms=3, label=label)
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", lw=1, color=f"C{i + len(series)}", label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _done(fig)


def plot_bars(values: dict, ylabel: str, title: str = "", logy: bool = False):
    """A generic bar chart {label: value}, each bar labelled with its value."""
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
                         baseline: str | None = None, budget: float | None = None, logy: bool = False):
    """The trade-off of a quantization study: one point per variant, stored size (MB) against quality.

    ``points`` is {label: (nbytes, value)}; each point gets its own colour and legend entry (labels
    written next to the points would collide where variants cluster). ``baseline`` names the point
    drawn as a dashed reference line; ``budget`` (a fraction, e.g. 0.05) shades the band within
    that much of the baseline, so the variants worth shipping are the leftmost points inside it.
    """
    if not points:
        checks.fail("points", "a non-empty {label: (nbytes, value)}", "an empty one")
    if baseline is not None:
        checks.check_choice(baseline, "baseline", points)
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    markers = "osD^vP*Xhp"
    for i, (label, (nbytes, value)) in enumerate(points.items()):
        ax.scatter(nbytes / 1e6, value, s=55, color=f"C{i % 10}", marker=markers[i % len(markers)],
                   zorder=3, label=label, edgecolors="white", linewidths=0.5)
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
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _done(fig)


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
