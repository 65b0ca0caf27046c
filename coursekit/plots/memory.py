"""Bytes: the size of each variant against a limit, and memory over time while a model loads
(notebooks 01 to 04 and 08).
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from .. import checks
from .style import COLORS, _done

__all__ = ["plot_memory_bars", "plot_memory_traces"]


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
