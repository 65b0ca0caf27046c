"""Why quantized weights are faster only when memory is the bottleneck: the roofline and the
measured times against their floor (notebook 10).
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from .. import checks
from .style import COLORS, _done

__all__ = ["plot_roofline", "plot_time_vs_floor"]


def plot_roofline(points: dict, bandwidth_gb_s: float, peaks_gflops: dict, measured: dict | None = None,
                  title: str = ""):
    """The roofline of a machine, with workloads placed at their arithmetic intensity.

    A kernel that does F flops while moving B bytes has arithmetic intensity I = F / B (flop per
    byte). It cannot run faster than the memory delivers bytes, I x bandwidth, nor faster than the
    arithmetic units, the peak: attainable GFLOP/s = min(peak, I x bandwidth). Left of the *ridge*
    (peak / bandwidth) a workload is memory-bound, right of it compute-bound.

    ``points`` is {label: (intensity, roof)}: each is drawn on the roof named ``roof``, a key of
    ``peaks_gflops`` ({roof: GFLOP/s}, e.g. a measured fp32 and bf16 matmul): where the roofline
    predicts it. ``measured`` adds achieved performance, {label: (intensity, GFLOP/s)} (flops /
    measured time), as hollow markers of the same shape and colour as the predicted point of the
    same label; the legend then says which is which. Beside each measured point is its achieved
    bandwidth, GFLOP/s / intensity = bytes / time in GB/s. Both axes are logarithmic: the memory
    roof is then a line of slope 1.
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
    for label, (intensity, gflops) in measured.items():
        checks.check_number(intensity, f"measured[{label!r}] intensity", positive=True)
        checks.check_number(gflops, f"measured[{label!r}] GFLOP/s", positive=True)
    ridges = {roof: peak / bandwidth_gb_s for roof, peak in peaks_gflops.items()}
    xs = [i for i, _ in points.values()] + [i for i, _ in measured.values()] + list(ridges.values())
    lo, hi = min(xs) / 3, max(xs) * 3
    predicted_suffix = " (predicted)" if measured else ""
    grid = [lo * (hi / lo) ** (k / 200) for k in range(201)]
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    roof_color = {roof: f"C{i}" for i, roof in enumerate(peaks_gflops)}
    for roof, peak in peaks_gflops.items():
        ax.plot(grid, [min(peak, x * bandwidth_gb_s) for x in grid], color=roof_color[roof], lw=2,
                label=f"roof: {roof} ({peak:.3g} GFLOP/s)")
        ax.axvline(ridges[roof], color=roof_color[roof], ls=":", lw=1)
        ax.annotate(f"ridge {ridges[roof]:.3g} flop/B", (ridges[roof], peak), textcoords="offset points",
                    xytext=(4, -12), fontsize=7, color=roof_color[roof])
    markers = "osD^v<>ph8"            # shapes that read as well hollow as filled
    style = {label: (markers[i % len(markers)], f"C{(i + len(peaks_gflops)) % 10}")   # a label looks alike
             for i, label in enumerate(dict.fromkeys([*points, *measured]))}          # in both sets
    for label, (intensity, roof) in points.items():
        y = min(peaks_gflops[roof], intensity * bandwidth_gb_s)
        ax.scatter(intensity, y, s=50, marker=style[label][0], color=style[label][1], zorder=3,
                   edgecolors="white", linewidths=0.5, label=label + predicted_suffix)
    for label, (intensity, gflops) in measured.items():
        ax.scatter(intensity, gflops, s=50, marker=style[label][0], facecolors="none", edgecolors=style[label][1],
                   linewidths=1.5, zorder=4, label=f"{label} (measured)")
        ax.annotate(f"{gflops / intensity:.2g} GB/s", (intensity, gflops), textcoords="offset points",
                    xytext=(0, -11), ha="center", fontsize=6.5, color=style[label][1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flop per byte moved)")
    ax.set_ylabel("GFLOP/s: attainable (roof), achieved (hollow)" if measured else "attainable GFLOP/s")
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
