"""Exercises of notebook 05 · Symmetric vs asymmetric quantization.

Hidden cases are built by seeded functions, so every machine sees the same tensors. The choose_mode
cases are picked so that the two MSEs are either exactly equal or clearly apart: a learner who
computes the MSE a little differently (float32 instead of float64) still gets the same verdict.
"""

from __future__ import annotations

import torch

from coursekit import quant

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 05.symmetric_scale
def _scale_cases():
    g = seeded(5)
    return [
        (torch.randn(64, generator=g) * 0.02, 8),
        (torch.relu(torch.randn(8, 8, generator=g)), 4),
        (-torch.rand(10, generator=g) * 3.0, 8),          # one-sided, negative: max|x| is -min
        (torch.tensor([0.75]), 2),                         # a single element, 2 bits (qmax = 1)
        (torch.zeros(4, 4), 8),                            # all zeros: any positive scale works; use 1
    ]


@exercise(title="the scale of symmetric quantization", cases=_scale_cases,
          forbid=("coursekit.quant.choose_qparams", "coursekit.quant.qparams_from_minmax"),
          hint=("a symmetric grid is centred on 0, so only the largest magnitude matters (a large "
                "negative value counts too), and it must land on the largest positive code of a signed "
                "`bits`-bit integer (127 for 8 bits). An all-zero x gets 1.0.",
                "scale = max|x| / (2**(bits-1) - 1) as a Python number (x.abs().max().item()), and 1.0 "
                "when that maximum is 0."))
def symmetric_scale(x, bits):
    qmax = 2 ** (bits - 1) - 1
    absmax = x.abs().max().item()
    return absmax / qmax if absmax > 0 else 1.0


# --------------------------------------------------------------------------- 05.symmetric_quantize
def _quantize_cases():
    g = seeded(6)
    return [
        (torch.randn(4, 16, generator=g), 8),
        (torch.relu(torch.randn(32, generator=g)), 4),
        (torch.randn(3, 5, generator=g) * 10, 3),
        (-torch.rand(12, generator=g), 8),
        (torch.tensor([-2.5]), 8),
        (torch.zeros(2, 3), 4),
    ]


@exercise(title="symmetric codes", cases=_quantize_cases,
          forbid=("coursekit.quant.quantize", "coursekit.quant.linear_quantize"),
          hint=("the scale is the one of symmetric_scale (all zeros included); then each value becomes "
                "its nearest code, kept inside the signed range of `bits` bits. Return int8 codes shaped "
                "like x.",
                "codes = torch.round(x / scale) clamped to [-2**(bits-1), 2**(bits-1) - 1], then "
                ".to(torch.int8). Divide by the scale rather than multiply by 1/scale, so that halves "
                "round as in the reference."))
def symmetric_quantize(x, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = x.abs().max() / qmax
    if scale == 0:
        scale = torch.tensor(1.0)
    return torch.round(x / scale).clamp(qmin, qmax).to(torch.int8)


# --------------------------------------------------------------------------- 05.fraction_of_range_used
def _range_cases():
    g = seeded(7)
    normal, relu = torch.randn(256, generator=g), torch.relu(torch.randn(256, generator=g))
    return [
        (quant.quantize(relu, bits=8, symmetric=True).data, 8),      # 0..127: half the range
        (quant.quantize(relu, bits=8).data, 8),                      # -128..127: int8 max - min overflows
        (quant.quantize(normal, bits=8, symmetric=True).data, 8),
        (quant.quantize(normal, bits=4, symmetric=True).data, 4),    # -7..7: 15 of 16 codes
        (torch.zeros(5, dtype=torch.int8), 8),                       # one code used
        (torch.tensor([3], dtype=torch.int8), 2),                    # a single code
    ]


@exercise(title="how much of the code range is used", cases=_range_cases,
          hint=("which codes does the tensor actually reach, and how many codes do `bits` bits offer? "
                "The answer is the share of all codes that the used span covers, both ends included, as "
                "a float. Careful: int8 arithmetic cannot hold the span from -128 to 127.",
                "(largest code - smallest code + 1) / 2**bits, with the largest and smallest codes taken "
                "as Python ints first (int(codes.max()), int(codes.min()))."))
def fraction_of_range_used(codes, bits):
    return (int(codes.max()) - int(codes.min()) + 1) / 2 ** bits


# --------------------------------------------------------------------------- 05.choose_mode
def _mode_cases():
    g = seeded(8)
    return [
        (torch.relu(torch.randn(64, 64, generator=g)), 8),           # one-sided: asymmetric
        (-torch.rand(500, generator=g) * 4, 4),                      # one-sided, negative: asymmetric
        (torch.tensor([-3.0, -1.0, 0.0, 2.0, 3.0]), 3),              # on the symmetric grid: symmetric
        (torch.arange(-7, 8, dtype=torch.float32) * 0.25, 4),        # on the symmetric grid: symmetric
        (torch.zeros(3, 3), 8),                                      # a tie (both exact): symmetric
        (torch.tensor([1.0]), 8),                                    # a single element
    ]


@exercise(title="choose the mode by measuring", cases=_mode_cases, points=2, partial=True,
          hint=("don't guess from the data's shape: measure. Quantize x both ways with coursekit's quant "
                "module, measure the error of each, and prefer symmetric unless asymmetric is strictly "
                "better (on a tie the cheaper mode wins).",
                "quant.quantize(x, bits=bits, symmetric=True) and symmetric=False give the two quantized "
                "tensors; quant.quantization_error(x, q) gives each MSE. Return 'asymmetric' only if its "
                "MSE is strictly lower, else 'symmetric'."))
def choose_mode(x, bits):
    mse_sym = quant.quantization_error(x, quant.quantize(x, bits=bits, symmetric=True))
    mse_asym = quant.quantization_error(x, quant.quantize(x, bits=bits, symmetric=False))
    return "asymmetric" if mse_asym < mse_sym else "symmetric"
