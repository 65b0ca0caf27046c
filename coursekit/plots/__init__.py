"""Every figure of the course. Each function returns a matplotlib Figure and works headless.

Figures are closed in pyplot before they are returned, so a notebook shows each one exactly once
(as the cell's result) and a script or test never opens a window. One module per kind of figure;
notebooks call them all as ``plots.<name>``:

* ``style``: colours, ``contrast_ratio``, ``text_color_on``, the shared heatmap.
* ``bits``: where the bits of a float type or a format go.
* ``grids``: a tensor against its quantization grid (error heatmaps, histograms with the grid).
* ``errors``: error against bits, granularity, rows, layers, bits per weight.
* ``memory``: bytes per variant, memory while loading.
* ``tradeoffs``: size against quality.
* ``speed``: the roofline, measured times against their floor.
* ``outliers``: activation outlier channels.
* ``charts``: plain lines, bars and heatmaps filled by the lessons.
"""

from .bits import plot_bit_fields, plot_bit_layout
from .charts import plot_bars, plot_heatmaps, plot_lines
from .errors import (error_vs_bits, plot_error_per_layer, plot_error_per_row, plot_error_vs_bits,
                     plot_error_vs_bits_per_weight, plot_error_vs_granularity)
from .grids import plot_grids_on_histogram, plot_histogram_with_grid, plot_quantization_error
from .memory import plot_memory_bars, plot_memory_traces
from .outliers import plot_outlier_channels
from .speed import plot_roofline, plot_time_vs_floor
from .style import COLORS, contrast_ratio, text_color_on
from .tradeoffs import plot_size_vs_quality

__all__ = ["COLORS", "contrast_ratio", "text_color_on", "plot_bit_layout", "plot_bit_fields", "plot_lines",
           "plot_bars", "plot_heatmaps", "error_vs_bits", "plot_error_vs_bits", "plot_error_vs_granularity",
           "plot_error_per_row", "plot_error_per_layer", "plot_error_vs_bits_per_weight", "plot_quantization_error",
           "plot_histogram_with_grid", "plot_grids_on_histogram", "plot_memory_bars", "plot_memory_traces",
           "plot_outlier_channels", "plot_roofline", "plot_time_vs_floor", "plot_size_vs_quality"]
