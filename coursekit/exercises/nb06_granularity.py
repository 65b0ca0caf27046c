"""Exercises of notebook 06 · Granularity: per-tensor, per-channel, per-group.

Weights here are quantized symmetrically (zero point 0), so a block is described by its scale
alone. Hidden cases are built by seeded functions, so every machine sees the same tensors.
"""

from __future__ import annotations

import math

import torch

from coursekit import quant

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 06.per_channel_scales
def _scale_cases():
    g = seeded(61)
    outlier = torch.randn(6, 10, generator=g) * 0.02
    outlier[2] *= 20
    zero_row = torch.randn(4, 4, generator=g)
    zero_row[1] = 0.0
    return [
        (torch.randn(8, 16, generator=g), 8),
        (outlier, 4),
        (zero_row, 8),                                   # a row of zeros gets scale 1
        (torch.randn(1, 5, generator=g), 8),             # a single output channel
        (torch.randn(3, 1, generator=g), 2),             # a single input: each row is one value
    ]


@exercise(forbid=("coursekit.quant.choose_qparams", "coursekit.layers.int8_per_channel"),
          title="symmetric scales, one per output channel", cases=_scale_cases,
          hint=("the symmetric scale of notebook 05, applied to each row (output channel) on its own: "
                "the row's largest magnitude over the largest positive code. Keep one column so the "
                "result broadcasts against w: shape (out_features, 1). A row of zeros gets 1.0.",
                "w.abs().amax(dim=1, keepdim=True) gives each row's largest magnitude in that shape; "
                "divide by 2**(bits-1) - 1 and replace the zeros with 1.0 using torch.where (no Python "
                "loop)."))
def per_channel_scales(w, bits):
    qmax = 2 ** (bits - 1) - 1
    absmax = w.abs().amax(dim=1, keepdim=True)
    return torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))


# --------------------------------------------------------------------------- 06.per_group_dequantize
def _group_case(x, bits, group_size):
    q = quant.quantize(x, bits=bits, symmetric=True, granularity="per_group", group_size=group_size)
    return (q.data, q.scale, group_size)


def _group_cases():
    g = seeded(62)
    return [
        _group_case(torch.randn(4, 16, generator=g), 8, 4),
        _group_case(torch.randn(3, 12, generator=g) * 0.1, 4, 6),
        _group_case(torch.randn(2, 3, 8, generator=g), 8, 4),      # 3-D: groups along the last dim
        _group_case(torch.randn(5, 8, generator=g), 4, 8),         # one group per row
        _group_case(torch.randn(2, 4, generator=g), 8, 1),         # a group per value
        _group_case(torch.randn(32, generator=g), 4, 8),           # 1-D
    ]


@exercise(title="per-group dequantization through the block view",
          forbid=("coursekit.quant.linear_dequantize", "coursekit.quant.QTensor.dequantize"), cases=_group_cases,
          hint=("think in blocks: in a 2-D view with one group per row, each row's scale is a single "
                "number. The codes and the scales list the same groups in the same order once flattened. "
                "Return float32 values with the codes' shape.",
                "codes.reshape(-1, group_size) gives one group per row; convert it to float, multiply by "
                "the scales as a column (scales.reshape(-1, 1)) and reshape the product back to "
                "codes.shape."))
def per_group_dequantize(codes, scales, group_size):
    blocks = codes.reshape(-1, group_size).float()       # (n_blocks, block_len)
    return (blocks * scales.reshape(-1, 1)).reshape(codes.shape)


# --------------------------------------------------------------------------- 06.percentile_scale
def _percentile_cases():
    g = seeded(62)
    heavy = torch.randn(4096, generator=g) * 0.02
    heavy[:8] *= 40                                   # eight outliers among 4096 values
    return [
        (heavy, 4, 99.0),                             # the outliers lie above the 99th percentile
        (heavy, 4, 100.0),                            # the 100th percentile is the absmax: min/max
        (heavy, 8, 99.9),
        (torch.randn(64, 32, generator=g), 4, 99.5),  # any shape: the percentile of every value
        (-torch.rand(1000, generator=g), 3, 90.0),    # all negative: it is |x| that counts
        (torch.zeros(10), 4, 99.0),                   # all zeros: a scale of 1, never 0
    ]


@exercise(title="a percentile calibration observer", cases=_percentile_cases,
          hint=("min/max lets the single largest |value| set the grid; a percentile observer ignores the "
                "top (100 - percentile) % of magnitudes instead. Mind the sign (it is the magnitude that "
                "counts), the units of `percentile` (99.9 means 99.9 %), and the all-zero tensor, whose "
                "scale must not be 0.",
                "take the percentile of x.abs() over every element with torch.quantile (it wants a fraction "
                "between 0 and 1, and float32 input), divide it by the largest code 2**(bits-1) - 1, and "
                "return 1.0 when the result is 0. Return a Python float."))
def percentile_scale(x, bits, percentile):
    """Symmetric scale from the `percentile`-th percentile of |x| instead of its maximum."""
    clip = torch.quantile(x.detach().float().abs().flatten(), percentile / 100).item()
    scale = clip / (2 ** (bits - 1) - 1)
    return scale if scale > 0 else 1.0


# --------------------------------------------------------------------------- 06.w8a32_linear
def _linear_case(g, batch_shape, out_f, in_f, with_bias=True):
    w = torch.randn(out_f, in_f, generator=g) * 0.05
    q = quant.quantize(w, bits=8, symmetric=True, granularity="per_channel", axis=0)
    x = torch.randn(*batch_shape, in_f, generator=g)
    bias = torch.randn(out_f, generator=g) * 0.1 if with_bias else None
    return (x, q.data, q.scale, bias)


def _linear_cases():
    g = seeded(63)
    return [
        _linear_case(g, (3,), 8, 16),
        _linear_case(g, (4,), 6, 6),                     # square: a missing transpose still runs
        _linear_case(g, (2, 3), 5, 12),                  # a batch of sequences
        _linear_case(g, (1,), 2, 4, with_bias=False),    # no bias
    ]


@exercise(title="a linear layer with int8 weights and float32 activations",
          forbid=("coursekit.layers.W8A16Linear.forward", "coursekit.quant.linear_dequantize"), cases=_linear_cases,
          points=2,
          hint=("dequantize first; after that it is an ordinary linear layer. The weight is "
                "(out_features, in_features), so x meets it along the input dimension. The bias may be "
                "None.",
                "weight = codes.float() * scales (the (out, 1) scales broadcast over each row), y = x @ "
                "weight.T, and add the bias only when it is not None."))
def w8a32_linear(x, codes, scales, bias):
    weight = codes.float() * scales                      # dequantize: (out, in) * (out, 1)
    y = x @ weight.T
    return y if bias is None else y + bias


# --------------------------------------------------------------------------- 06.bits_per_weight
def _bits_per_weight_cases():
    return [
        (576, 4, 128),      # SmolLM2's width: 4 full groups and a short last one of 64, so 5 groups
        (576, 4, 64),       # 64 divides 576: 9 groups
        (1536, 4, 128),     # 128 divides 1536: 12 groups
        (576, 4, None),     # per output channel: one group per row
        (100, 2, 128),      # a group longer than the row: one (short) group
        (4096, 8, 32),
        (130, 4, 32),       # 4 full groups and a last one of 2 weights
        (1, 4, 32),         # a single weight pays a whole scale and zero point
    ]


@exercise(title="bits per weight of a grouped layout", cases=_bits_per_weight_cases,
          forbid=("coursekit.quant.quantize", "coursekit.memory.model_nbytes", "coursekit.memory.tensor_nbytes",
                  "coursekit.formats.bits_per_weight"),
          hint=("count what one row stores: a code of `bits` for each weight, and for each group a float32 "
                "scale and an int8 zero point. The trap is the group count when group_size does not divide "
                "the row (576 in groups of 128): the leftover weights still form a group of their own. "
                "None means a single group per row.",
                "groups per row = ceil(in_features / group_size), or 1 for None; bits of a row = bits * "
                "in_features + groups * (32 + 8); divide by in_features and return a float."))
def bits_per_weight(in_features, bits, group_size):
    """Bits per weight of one row: codes, plus a float32 scale and an int8 zero point per group."""
    groups = 1 if group_size is None else math.ceil(in_features / group_size)
    return (bits * in_features + groups * (32 + 8)) / in_features
