"""Exercises of notebook 11 · Outliers and smarter rounding.

The learner writes the three small computations at the heart of the lesson's methods: SmoothQuant's
per-channel smoothing scales, one column of GPTQ (round it, spread its error over the columns still
to round) and LLM.int8()'s split of a matmul into an outlier part and an int8 part. Hidden cases
are built by seeded functions, so every machine sees the same tensors.
"""

from __future__ import annotations

import torch

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 11.smoothing_scales
def _smoothing_cases():
    g = seeded(111)
    act = torch.rand(16, generator=g) * 20 + 0.1
    wmax = torch.rand(16, generator=g) * 0.5 + 0.01
    dead_act, dead_w = act.clone(), wmax.clone()
    dead_act[[2, 9]] = 0.0                      # channels that never fire
    dead_w[5] = 0.0                             # a weight column of zeros
    return [(act, wmax, 0.5), (act, wmax, 0.0), (act, wmax, 1.0), (act, wmax, 0.75),
            (dead_act, dead_w, 0.5), (torch.tensor([4.0]), torch.tensor([1.0]), 0.5)]


@exercise(title="SmoothQuant's smoothing scales",
          forbid=("coursekit.ptq.smoothquant.smoothing_scales",), cases=_smoothing_cases, points=1,
          hint=("alpha is the share of the difficulty that moves to the weights: alpha=1 must give scales equal "
                "to the activation maxima, alpha=0 one over the weight maxima. A channel whose activation or "
                "weight maximum is exactly 0 must get the scale 1, not 0 or inf.",
                "raise the activation maxima to alpha and divide by the weight maxima raised to 1 - alpha, "
                "elementwise; then use torch.where to put 1.0 where either maximum is 0.",
                "s = act_absmax**alpha / weight_absmax**(1 - alpha), then "
                "torch.where((act_absmax == 0) | (weight_absmax == 0), 1.0, s)."))
def smoothing_scales(act_absmax, weight_absmax, alpha):
    a = act_absmax.clamp(min=1e-5)
    w = weight_absmax.clamp(min=1e-5)
    s = a ** alpha / w ** (1 - alpha)
    return torch.where((act_absmax == 0) | (weight_absmax == 0), torch.ones_like(s), s)


# --------------------------------------------------------------------------- 11.gptq_column_update
def _gptq_cases():
    g = seeded(112)
    cases = []
    for out_f, in_f, i, bits in ((4, 6, 0, 4), (4, 6, 3, 3), (5, 8, 7, 4), (3, 5, 1, 2)):
        w = torch.randn(out_f, in_f, generator=g)
        x = torch.randn(64, in_f, generator=g) @ (torch.eye(in_f) + 0.5 * torch.randn(in_f, in_f, generator=g))
        h = x.T @ x / 64 + 0.01 * torch.eye(in_f)
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        lo, hi = w.amin(1, keepdim=True).clamp(max=0), w.amax(1, keepdim=True).clamp(min=0)
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = ((hi - lo) / (qmax - qmin))[:, 0]
        zero = torch.round(qmin - lo / scale[:, None])[:, 0]
        cases.append((w, u, i, scale, zero, bits))
    return cases


@exercise(title="one GPTQ column: round it, let the others absorb the error",
          forbid=("coursekit.ptq.gptq.gptq_weight",), cases=_gptq_cases, points=2,
          atol=1e-4, rtol=1e-4,
          hint=("work on a copy of w. Column i must end up on the grid (its dequantized values) and only the "
                "columns after i change; the columns before i are already final. The share of column j is a "
                "ratio of two entries of u in row i: check it on i = 0, where u's row 0 times u[0, 0] is row 0 "
                "of the inverse of h.",
                "steps: codes of column i = clamp(round(w[:, i] / scale) + zero_point, qmin, qmax); dequantize "
                "them; err = (original column - dequantized) / u[i, i]; subtract the outer product of err and "
                "u[i, i+1:] from w[:, i+1:]; put the dequantized column in place.",
                "q = torch.clamp(torch.round(w[:, i] / scale) + zero_point, -2**(bits-1), 2**(bits-1) - 1); "
                "deq = (q - zero_point) * scale; err = (w[:, i] - deq) / u[i, i]; "
                "w[:, i+1:] -= err[:, None] * u[i, i+1:][None, :]; w[:, i] = deq."))
def gptq_column_update(w, u, i, scale, zero_point, bits):
    w = w.clone()
    q = torch.clamp(torch.round(w[:, i] / scale) + zero_point, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    deq = (q - zero_point) * scale
    err = (w[:, i] - deq) / u[i, i]
    w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
    w[:, i] = deq
    return w


# --------------------------------------------------------------------------- 11.outlier_split_matmul
def _split_cases():
    g = seeded(113)
    x = torch.randn(12, 32, generator=g)
    x[:, [3, 20]] *= 30                          # two outlier channels
    w = torch.randn(8, 32, generator=g) * 0.1
    calm = torch.randn(6, 16, generator=g)       # nothing above the threshold: all int8
    w16 = torch.randn(4, 16, generator=g)
    loud = torch.randn(5, 8, generator=g) * 50   # everything above: all in float
    w8 = torch.randn(3, 8, generator=g)
    one = torch.randn(1, 32, generator=g)
    one[0, 7] = -9.0                             # a negative outlier counts too
    return [(x, w, 6.0), (calm, w16, 6.0), (loud, w8, 6.0), (one, w, 6.0), (x, w, 100.0)]


def _absmax_int8(t, dim):
    scale = t.abs().amax(dim=dim, keepdim=True).clamp(min=1e-8) / 127
    return torch.clamp(torch.round(t / scale), -127, 127), scale


@exercise(title="LLM.int8(): the outlier split of a matmul",
          forbid=("coursekit.ptq.llm_int8.outlier_split_matmul", "coursekit.ptq.llm_int8.Int8OutlierLinear.forward"), cases=_split_cases, points=2, atol=1e-4, rtol=1e-4,
          hint=("an input channel is an outlier when |x| exceeds the threshold for *any* token, negative values "
                "included. The outlier columns of x meet the same columns of w. Two edge cases are hidden: no "
                "outlier at all (the float part is empty) and only outliers (there is nothing left to quantize).",
                "make a boolean mask over input channels; float part: x[:, mask] @ w[:, mask].T; int8 part: "
                "quantize x[:, ~mask] with one absmax scale per row (token) and w[:, ~mask] with one per row "
                "(output channel), multiply the codes, then multiply by both scales; add the two parts.",
                "mask = (x.abs() > threshold).any(dim=0); codes = clamp(round(t / s), -127, 127) with "
                "s = t.abs().amax(dim=1, keepdim=True) / 127; low = (xq @ wq.T) * sx * sw.T."))
def outlier_split_matmul(x, w, threshold):
    mask = (x.abs() > threshold).any(dim=0)
    high = x[:, mask] @ w[:, mask].T
    if mask.all():                   # nothing left for int8 (an absmax over no columns would fail)
        return high
    xq, sx = _absmax_int8(x[:, ~mask], 1)
    wq, sw = _absmax_int8(w[:, ~mask], 1)
    return high + (xq @ wq.T) * sx * sw.T


# --------------------------------------------------------------------------- 11.which_change_matters
@exercise(title="which change does the work?", choices=("a", "b", "c", "d"),
          hint=("read the controls one line at a time: each changes one thing and says whether its effect "
                "clears the noise floor. Look for the one clear gain that is far larger than the others.",
                "computing the scale at run time helps far less than one other change; keeping the outlier "
                "channels in float shows no reliable difference; a weight scale per row is worth a few percent at "
                "most; one change takes the damage from about doubling the perplexity to under a tenth.",
                "one activation scale per token: the first token's huge values get a scale of their own, and "
                "every other token keeps a fine grid. The answer is the statement about tokens."))
def which_change_matters():
    """The letter of the statement the notebook's controls support: per-token activation scales."""
    return "b"
