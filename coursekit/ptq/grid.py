"""The grid every weight-only method here rounds onto, and the layer that stores the result.

Asymmetric, per output channel (``group_size=None``) or per group of ``group_size`` consecutive
input weights: ``coursekit.quant``'s own grid (``quantize(w, bits, granularity=...)``), stored in
a ``coursekit.layers.PackedLinear``. A group size that does not divide ``in_features`` leaves a
shorter last group in each row, as in the reference GPTQ implementations. RTN, AWQ and GPTQ
differ only in *which* weights they round and *how*; they all end in ``packed_layer``, so
``model_nbytes`` counts exactly what a deployment would store. 3-bit codes have no packing of
their own in the course (a byte does not hold a whole number of them): they are stored in 4-bit
slots, so a 3-bit model is as large as a 4-bit one here, and the tables say so.
"""

from __future__ import annotations

import torch

from .. import checks, quant
from ..layers import PackedLinear

WEIGHT_BITS = (2, 3, 4)


def check_weight_args(bits, group_size):
    """bits: 2, 3 or 4; group_size: None (per output channel) or an int >= 1."""
    bits = checks.check_choice(bits, "bits", WEIGHT_BITS)
    if group_size is not None:
        group_size = checks.check_int(group_size, "group_size", low=1)
    return bits, group_size


def _granularity(group_size):
    return dict(granularity="per_channel", axis=0) if group_size is None else \
        dict(granularity="per_group", group_size=group_size)


def quantize_weight(w: torch.Tensor, bits: int, group_size: int | None) -> quant.QTensor:
    """Round-to-nearest of a weight (out, in) on the asymmetric grid of each row or group."""
    return quant.quantize(w.float(), bits, symmetric=False, **_granularity(group_size))


def grid(w: torch.Tensor, bits: int, group_size: int | None):
    """Scale and zero point (out, n_groups) spanning each row's (or group's) min..max."""
    scale, zero = quant.choose_qparams(w.float(), bits, symmetric=False, **_granularity(group_size))
    return scale, zero.float()


def rtn_dequantized(w: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """Round-to-nearest, straight back to floats: the baseline every method must beat."""
    return quantize_weight(w, bits, group_size).dequantize()


def packed_layer(codes, scale, zero, bits: int, group_size: int | None, bias) -> PackedLinear:
    """Store signed codes and their grid in a PackedLinear (3-bit codes in 4-bit slots)."""
    container = 2 if bits == 2 else 4
    return PackedLinear.from_codes(codes.to(torch.int8), scale.float(), zero.to(torch.int8), container,
                                   group_size, bias, torch.float32)
