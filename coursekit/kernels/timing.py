"""A stopwatch for speed comparisons on a busy machine: contenders timed in interleaved rounds.

A timing of a few milliseconds moves with whatever else the machine runs. Timing contender A ten
times and then B ten times lets a burst of noise land on one of them only; a round that calls
each contender once, repeated, makes the noise hit all of them alike, and the ratios between the
medians are what a lesson reports. The notebooks and `make bench` (benchmarks/) use the same one.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["median_ms", "interleaved_median_ms"]


def median_ms(fn, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    return interleaved_median_ms({"fn": fn}, repeats=repeats, warmup=warmup)["fn"]


def interleaved_median_ms(fns: dict, repeats: int = 7, warmup: int = 1) -> dict:
    """Median wall time in milliseconds of each of several functions ({name: fn}), timed in rounds.

    Every function is first called `warmup` times untimed (first calls set up memory and kernel
    choices); then each of `repeats` rounds calls every function once. A function that launches
    work on a GPU must wait for it (torch.cuda.synchronize()) before it returns.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"interleaved_median_ms: repeats must be a whole number >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"interleaved_median_ms: warmup must be a whole number >= 0, got {warmup!r}")
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
