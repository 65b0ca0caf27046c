"""MSE clipping: a narrower range than min..max, chosen per block by the error it leaves.

With few bits, the rare largest values stretch the grid for everyone: at 4 bits, a block whose
largest value is eight times its typical one spends most of its 16 levels on values that almost
never occur. Clipping them trades a large error on a few values for a finer step on all the others.
Which trade pays depends on the block, so we try a fixed list of ranges (fractions of the block's
min..max) and keep, per block, the one whose round trip has the lowest squared error. The first
fraction is 1.0, min/max itself, so the result is never worse than min/max.

`coursekit.quant` calls `best_qparams` for ``clipping="mse"`` and hands it its own steps: how a
range becomes a grid (qparams_from_minmax) and the round trip through the codes (linear_quantize,
then linear_dequantize). The search adds nothing else, and needs no import of quant.
"""

from __future__ import annotations

from typing import Callable

import torch

#: Fractions of each block's range that are tried (1.0 first: never worse than min/max).
CLIP_FRACTIONS = tuple(1.0 - 0.025 * i for i in range(21))     # 1.0, 0.975, ..., 0.5


def best_qparams(blocks: torch.Tensor, x_min: torch.Tensor, x_max: torch.Tensor,
                 grid_of: Callable, round_trip: Callable):
    """Per row of `blocks`, the scale and zero point of the clipped range with the lowest error.

    `x_min`, `x_max`: the rows' minima and maxima, (n_blocks, 1) float32 columns.
    ``grid_of(lo, hi) -> (scale, zero_point)`` makes the grid of a range and
    ``round_trip(blocks, scale, zero_point)`` quantizes and dequantizes on it. The loop runs over
    the candidate fractions; each candidate is evaluated for all blocks at once.
    """
    best_err = best_scale = best_zero = None
    for frac in CLIP_FRACTIONS:
        scale, zero = grid_of(x_min * frac, x_max * frac)
        err = round_trip(blocks, scale, zero).sub_(blocks).pow_(2).sum(dim=1, keepdim=True)
        if best_err is None:
            best_err, best_scale, best_zero = err, scale, zero
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero
