"""The grid every weight-only method here rounds onto, and the layer that stores the result.

Asymmetric, per output channel (``group_size=None``) or per group of ``group_size`` consecutive
input weights: the grid of ``coursekit.layers.PackedLinear``. RTN, AWQ and GPTQ differ only in
*which* weights they round and *how*; they all end in ``packed_layer``, so ``model_nbytes`` counts
exactly what a deployment would store. 3-bit codes have no packing of their own in the course
(a byte does not hold a whole number of them): they are stored in 4-bit slots, so a 3-bit model
is as large as a 4-bit one here, and the tables say so.
"""

from __future__ import annotations

import torch

from .. import checks, quant
from ..layers import PackedLinear

WEIGHT_BITS = (2, 3, 4)


def check_weight_args(bits, group_size, in_features: int | None = None):
    bits = checks.check_choice(bits, "bits", WEIGHT_BITS)
    if group_size is not None:
        group_size = checks.check_int(group_size, "group_size", low=1)
        if in_features is not None and in_features % group_size:
            checks.fail("group_size", f"a divisor of in_features ({in_features}), or None for per-channel",
                        group_size)
    return bits, group_size


def grid(w: torch.Tensor, bits: int, group_size: int | None):
    """Scale and zero point (out, n_groups) spanning each row's (or group's) min..max."""
    gs = w.shape[1] if group_size is None else group_size
    blocks = w.reshape(w.shape[0], -1, gs)           # (out, n_groups, group_size): no loop over groups
    scale, zero = quant.qparams_from_minmax(blocks.amin(-1).float(), blocks.amax(-1).float(), bits, check=False)
    return scale, zero.float()


def expand(p: torch.Tensor, in_features: int) -> torch.Tensor:
    """A per-group parameter (out, n_groups) repeated over each group's columns: (out, in)."""
    return p.repeat_interleave(in_features // p.shape[1], dim=1)


def round_to_grid(w, scale, zero, bits):
    """Signed codes of w on the grid (scale, zero broadcast against w)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(w / scale) + zero, qmin, qmax)


def rtn_dequantized(w: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """Round-to-nearest, straight back to floats: the baseline every method must beat."""
    scale, zero = grid(w, bits, group_size)
    s, z = expand(scale, w.shape[1]), expand(zero, w.shape[1])
    return (round_to_grid(w, s, z, bits) - z) * s


def packed_layer(codes, scale, zero, bits: int, group_size: int | None, bias) -> PackedLinear:
    """Store signed codes and their grid in a PackedLinear (3-bit codes in 4-bit slots)."""
    container = 2 if bits == 2 else 4
    return PackedLinear.from_codes(codes.to(torch.int8), scale.float(), zero.to(torch.int8), container,
                                   group_size, bias, torch.float32)
