"""The fast path of `coursekit.quant.quantize`: the same steps, compiled by torch.compile.

Quantization is memory-bound: run eagerly, every step (divide, round, add, clamp, cast) reads and
writes the whole tensor, so it takes many times longer than one read of the weight. torch.compile
fuses the steps into one or two passes over memory, with identical codes and scales. Compiling
takes seconds, so only large tensors use it, where it pays off: quantizing a model means many such
matrices, compiled once (shapes are dynamic). If compilation is unavailable or fails, the eager
function runs instead, and `error` says why.
Switch it off with ``coursekit.quant.fast_path.enabled = False``, or COURSEKIT_FAST_QUANT=0.
"""

from __future__ import annotations

import os

import torch

#: Tensors at least this large (a 4096 x 4096 weight) take the compiled path.
MIN_NUMEL = 4096 * 4096


class FastPath:
    """`fn` compiled by torch.compile on first use; `fn` itself from the first failure on."""

    def __init__(self, fn, min_numel: int = MIN_NUMEL):
        self.fn, self.min_numel = fn, min_numel
        self.enabled = os.environ.get("COURSEKIT_FAST_QUANT", "1") != "0"
        self.error: str | None = None
        self._compiled = None

    def applies(self, x: torch.Tensor) -> bool:
        """Whether the fast path is on and x is large enough for compiling to pay off."""
        return self.enabled and x.numel() >= self.min_numel

    def __call__(self, *args):
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=True)
            return self._compiled(*args)
        except Exception as exc:  # no compiler, an unsupported device, ...: eager is always right
            self.enabled, self.error = False, f"{type(exc).__name__}: {exc}"
            return self.fn(*args)
