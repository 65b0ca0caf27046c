"""Exercises of notebook 09, quantization-aware training."""

from __future__ import annotations

import torch

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 09.fake_quant_symmetric
def _fake_quant_cases():
    g = seeded(9)
    return [
        (torch.randn(5, 8, generator=g), 4),
        (torch.randn(64, generator=g) * 3, 2),
        (torch.randn(3, 4, 6, generator=g), 3),
        (torch.randn(16, generator=g) - 5.0, 8),        # all negative: the minimum sets the scale
        (torch.tensor([0.6, -0.25, 1.0, -1.0]), 2),      # absmax is on the grid, -1 maps to -qmax
        (torch.zeros(2, 3), 4),                         # all zeros: no NaN
    ]


@exercise(title="fake quantization on a symmetric grid", cases=_fake_quant_cases, points=2,
          hint=("quantize, then dequantize right away: the result is floats again, but only values on "
                "the symmetric `bits`-bit grid. The scale comes from the largest magnitude, as in "
                "notebook 05. An all-zero x must come back as zeros, without NaN.",
                "scale = x.abs().max() / (2**(bits-1) - 1); round x / scale, clamp to [-2**(bits-1), "
                "2**(bits-1) - 1] and multiply by the scale again. If the maximum is 0, return "
                "x.clone()."))
def fake_quant_symmetric(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x snapped onto the symmetric per-tensor grid of `bits` bits, as floats of x's dtype."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    absmax = x.abs().max()
    if absmax == 0:            # an all-zero tensor is already on every grid
        return x.clone()
    scale = absmax / qmax
    return torch.clamp(torch.round(x / scale), qmin, qmax) * scale


# --------------------------------------------------------------------------- 09.ste_round
def _round_cases():
    g = seeded(19)
    return [
        (torch.randn(12, generator=g) * 4,),
        (torch.tensor([-2.7, -0.2, 0.0, 0.4, 1.6, 3.0]),),
        (torch.randn(2, 3, 4, generator=g) * 10,),
    ]


@exercise(title="rounding with a straight-through gradient", cases=_round_cases,
          hint=("you need a tensor whose value is x rounded but whose gradient is that of x itself. "
                "Autograd treats whatever is inside .detach() as a constant, and adding a constant "
                "changes a value without changing its gradient.",
                "start from x and add a detached correction: the difference between the rounded value "
                "and x.",
                "x + (x.round() - x).detach()."))
def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) in value; the gradient of the identity."""
    return x + (x.round() - x).detach()


# --------------------------------------------------------------------------- 09.ste_grad
def _grad_cases():
    g = seeded(29)
    return [
        (torch.randn(10, generator=g) * 3, torch.randn(10, generator=g)),
        (torch.tensor([-1.6, -0.4, 0.3, 2.2]), torch.tensor([1.0, 2.0, -3.0, 0.5])),
        (torch.randn(3, 5, generator=g), torch.ones(3, 5)),
    ]


@exercise(title="the gradient that flows through ste_round", cases=_grad_cases,
          hint=("autograd fills in .grad only on a tensor that requires a gradient, and only after "
                "backward() on a scalar built from it. Which scalar? The loss of the exercise's text, "
                "built with your own ste_round, on a copy of x.",
                "x = x.clone().requires_grad_(True); (ste_round(x) * upstream).sum().backward(); return "
                "x.grad. Zeros mean your ste_round is plain rounding, whose gradient is 0."))
def ste_grad(x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """d/dx of (ste_round(x) * upstream).sum(): the upstream gradient, passed straight through."""
    x = x.clone().requires_grad_(True)
    (ste_round(x) * upstream).sum().backward()
    return x.grad


# --------------------------------------------------------------------------- 09.perplexity_gap
def _gap_cases():
    return [(27.3, 18.1), (1000.0, 250.0), (15.0, 15.0), (20.0, 25.0)]


@exercise(title="how much worse PTQ is than QAT", cases=_gap_cases,
          hint=("the gap is relative: measured in units of QAT's perplexity, not in perplexity points. "
                "Check yourself on numbers: 27 against 18 is 0.5 (50% higher), equal perplexities give "
                "0, and a PTQ that scores better gives a negative gap.",
                "the ratio ppl_ptq / ppl_qat says how many times higher PTQ's perplexity is; subtract 1."))
def perplexity_gap(ppl_ptq: float, ppl_qat: float) -> float:
    """How much higher PTQ's perplexity is than QAT's, relative to QAT's: ppl_ptq / ppl_qat - 1."""
    return ppl_ptq / ppl_qat - 1


# --------------------------------------------------------------------------- 09.recovered_fraction
def _recovered_cases():
    return [(14.0, 40.0, 20.5), (14.0, 40.0, 40.0), (14.0, 40.0, 14.0), (10.0, 30.0, 9.0),
            (14.0, 14.0, 13.0), (14.0, 13.5, 13.0)]


@exercise(title="the share of PTQ's damage that QAT undoes", cases=_recovered_cases,
          hint=("picture the perplexities on a line: fp32 (the best), PTQ (worse), QAT somewhere around. "
                "PTQ's damage is how far it fell from fp32; what QAT recovered is how far it came back "
                "from PTQ. When PTQ did no damage there is nothing to recover.",
                "damage = ppl_ptq - ppl_fp32 and recovered = ppl_ptq - ppl_qat; return recovered / "
                "damage, and 0.0 when ppl_ptq <= ppl_fp32 (test it before dividing)."))
def recovered_fraction(ppl_fp32: float, ppl_ptq: float, ppl_qat: float) -> float:
    """The share of the damage PTQ did that QAT undoes; 0.0 when PTQ did no damage."""
    if ppl_ptq <= ppl_fp32:
        return 0.0
    return (ppl_ptq - ppl_qat) / (ppl_ptq - ppl_fp32)
