"""Exercises of notebook 03 · Quantization theory.

The learner writes the three steps of linear quantization for int8, asymmetric, per tensor, and
the error measure used to judge them. The references follow the notebook (and coursekit.quant):
round half to even (torch.round), codes in [-128, 127], and a range widened to include 0 before
the scale and zero point are derived.
"""

from __future__ import annotations

import torch

from .spec import exercise, seeded

QMIN, QMAX = -128, 127

# The worked example of the notebook.
WORKED = [[191.6, -13.5, 728.6], [92.14, 295.5, -184.0], [0.0, 684.6, 245.5]]


# --------------------------------------------------------------------------- 03.linear_quantize
def _quantize_cases():
    g = seeded(3)
    return [
        (torch.tensor(WORKED), 3.5, -70),                        # 728.6 must clip to 127
        (torch.tensor(WORKED), 3.578823566436768, -77),          # the derived scale: nothing clips
        (torch.randn(4, 5, generator=g) * 1.6, 0.01, 0),         # many values clip, at both ends
        (torch.randn(6, generator=g) * 3, 0.05, 10),
        # exactly on and just past the edges: 127, 127.5, 128.4, -128, -128.5, -129.6 steps
        (torch.tensor([1.27, 1.275, 1.284, -1.28, -1.285, -1.296]), 0.01, 0),
        (torch.tensor([0.37, 0.52, 0.649, -0.36]), 0.1, 3),     # rounds up, down, and the sign
        (torch.full((2, 3), 2.0), 0.5, -128),                    # a constant tensor
        (torch.tensor([-3.0, -1.2, -0.01]), 0.0118, 127),        # negative only
    ]


@exercise(title="codes q = clip(round(x / s) + z)", cases=_quantize_cases, points=2,
          forbid=("coursekit.quant.linear_quantize",),
          hint=("three steps: scale and round, shift by the zero point, keep the result inside int8's "
                "range [-128, 127]. Their order matters: what becomes of a code of 200 if you change the "
                "dtype before limiting it?",
                "round x / scale with torch.round (halves go to even), add the zero point, clamp to "
                "[-128, 127], and only then convert with .to(torch.int8): converting first wraps "
                "out-of-range values around."))
def linear_quantize(x, scale, zero_point):
    q = torch.round(x / scale) + zero_point
    return q.clamp(QMIN, QMAX).to(torch.int8)


# --------------------------------------------------------------------------- 03.linear_dequantize
def _dequantize_cases():
    g = seeded(4)
    return [
        (torch.tensor([[127, -70, 127], [-44, 14, -123], [-70, 126, 0]], dtype=torch.int8), 3.5, -70),
        (torch.tensor([-128, 0, 127], dtype=torch.int8), 0.5, 0),
        # int8 arithmetic would overflow here: 127 - (-77) = 204 does not fit in int8
        (torch.tensor([127, 100, -128, -77], dtype=torch.int8), 3.578823566436768, -77),
        (torch.tensor([-128, -1, 127], dtype=torch.int8), 0.01, 127),
        (torch.randint(-128, 128, (4, 6), generator=g, dtype=torch.int8), 0.0123, -5),
        (torch.full((3,), 127, dtype=torch.int8), 1.0, -128),
    ]


@exercise(title="values r = s (q - z)", cases=_dequantize_cases, points=1,
          forbid=("coursekit.quant.linear_dequantize",),
          hint=("the formula is the one in the title; the trap is the arithmetic type. In int8, 127 - "
                "(-77) = 204 does not fit and wraps around. The result is float32.",
                "turn the codes into floats with codes.float() before you subtract the zero point, then "
                "multiply by the scale."))
def linear_dequantize(codes, scale, zero_point):
    return scale * (codes.float() - zero_point)


# --------------------------------------------------------------------------- 03.scale_and_zero_point
def _qparams_cases():
    g = seeded(5)
    return [
        (torch.tensor(WORKED),),                                  # scale 3.5788, zero point -77
        (torch.randn(8, 8, generator=g),),
        (torch.randn(100, generator=g) * 0.02 + 0.01,),
        (torch.tensor([-1.0, 1.5]),),                             # two signs, no element at 0
        (torch.tensor([-0.5, 2.0, 7.25, 3.0]),),
        (torch.tensor([1.5, 2.0, 5.0]),),                         # positive only: range widened to [0, 5]
        (torch.tensor([[-3.0, -0.5], [-2.0, -1.0]]),),            # negative only: range widened to [-3, 0]
        (torch.full((2, 2), 4.0),),                               # constant: [0, 4]
    ]


@exercise(title="asymmetric int8 scale and zero point from min and max", cases=_qparams_cases,
          points=2, atol=1e-6, rtol=1e-5, partial=True,
          forbid=("coursekit.quant.qparams_from_minmax", "coursekit.quant.choose_qparams"),
          hint=("three ideas, in order: the range must include 0 (so that 0 is exactly representable); "
                "the scale spreads that range over int8's 256 codes; the zero point is the code that "
                "stands for the real value 0, rounded and kept inside [-128, 127].",
                "r_min = min(x.min(), 0) and r_max = max(x.max(), 0) as Python floats; the scale is "
                "(r_max - r_min) / (127 - (-128)).",
                "zero_point = round(-128 - r_min / scale), then clipped to [-128, 127]. Return (scale, "
                "zero_point) as (float, int)."))
def scale_and_zero_point(x):
    r_min = min(x.min().item(), 0.0)
    r_max = max(x.max().item(), 0.0)
    scale = (r_max - r_min) / (QMAX - QMIN)
    zero_point = int(round(QMIN - r_min / scale))
    zero_point = max(QMIN, min(QMAX, zero_point))
    return scale, zero_point


# --------------------------------------------------------------------------- 03.mse
def _mse_cases():
    g = seeded(6)
    x = torch.randn(5, 7, generator=g)
    return [
        (torch.tensor(WORKED), linear_dequantize(linear_quantize(torch.tensor(WORKED), 3.5, -70), 3.5, -70)),
        (x, x + 0.1 * torch.randn(5, 7, generator=g)),
        (x, x.clone()),                                           # identical: 0
        (torch.tensor([1.0, -2.0, 3.0]), torch.tensor([2.0, -2.0, 1.0])),   # errors of both signs
    ]


@exercise(title="mean squared error", cases=_mse_cases, points=1, atol=1e-7, rtol=1e-5,
          forbid=("coursekit.quant.quantization_error",),
          hint=("square each element's error and average over all the elements (not a sum, not one per "
                "row). Return a Python float, not a tensor.",
                "(x - y).pow(2).mean(), then .item()."))
def mse(x, y):
    return (x - y).pow(2).mean().item()
