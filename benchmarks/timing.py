"""Timing helpers shared by the benchmarks: coursekit's own stopwatch (coursekit/kernels/timing.py),
so that `make bench` and the notebooks time the same way."""

from coursekit.kernels.timing import interleaved_median_ms, median_ms

__all__ = ["interleaved_median_ms", "median_ms"]
