"""What a block of zeros is divided by: the one guard every format here needs.

A block whose values are all 0 has a scale of 0, and x / 0 is nan. Formats divide in one of two
ways, and each has its guard:

* ``x / divisor(scale)``: MX, NVFP4, FP8. An all-zero block divides by 1 and stays 0.
* ``x * reciprocal(scale)``: ggml's Q8_0/Q4_0 and bitsandbytes' NF4 multiply by 1 / scale, and so
  do we, to match their codes bit for bit (x * (1 / d) can differ from x / d in the last bit).
  ggml writes ``id = d ? 1.0f/d : 0.0f``: an all-zero block multiplies by 0.
"""

from __future__ import annotations

import torch


def divisor(scale: torch.Tensor) -> torch.Tensor:
    """``scale`` where it is positive, 1 where it is not (an all-zero block)."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def reciprocal(scale: torch.Tensor) -> torch.Tensor:
    """1 / ``scale``, and 0 where ``scale`` is 0 (ggml's rule)."""
    zero = scale == 0
    return torch.where(zero, torch.zeros_like(scale), 1.0 / torch.where(zero, torch.ones_like(scale), scale))
