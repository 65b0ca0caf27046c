"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def interleaved_median_ms(fns: dict, repeats: int = 7, warmup: int = 1) -> dict:
    """Median wall time in milliseconds of each of several functions, timed in rounds.

    Each round calls every function once, so a burst of noise from elsewhere on the machine
    (memory-bound timings of a few milliseconds are sensitive to it) hits all contenders alike
    instead of whichever happened to be running; the ratios between them are what we report.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}
