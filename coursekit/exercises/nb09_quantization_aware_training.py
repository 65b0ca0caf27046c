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
          hint="scale = x.abs().max() / (2**(bits-1) - 1); round x / scale, clamp to "
               "[-2**(bits-1), 2**(bits-1) - 1], multiply by scale again. An all-zero x comes back as zeros.")
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
          hint="x + (x.round() - x).detach(): the value of x.round(), but autograd only sees x.")
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
          hint="x = x.clone().requires_grad_(True); (ste_round(x) * upstream).sum().backward(); "
               "return x.grad. If you get zeros, your ste_round is plain rounding.")
def ste_grad(x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """d/dx of (ste_round(x) * upstream).sum(): the upstream gradient, passed straight through."""
    x = x.clone().requires_grad_(True)
    (ste_round(x) * upstream).sum().backward()
    return x.grad


# --------------------------------------------------------------------------- 09.perplexity_gap
def _gap_cases():
    return [(27.3, 18.1), (1000.0, 250.0), (15.0, 15.0), (20.0, 25.0)]


@exercise(title="how much worse PTQ is than QAT", cases=_gap_cases,
          hint="a ratio minus one: ppl_ptq / ppl_qat - 1 (0.5 means PTQ's perplexity is 50% higher).")
def perplexity_gap(ppl_ptq: float, ppl_qat: float) -> float:
    """How much higher PTQ's perplexity is than QAT's, relative to QAT's: ppl_ptq / ppl_qat - 1."""
    return ppl_ptq / ppl_qat - 1


# --------------------------------------------------------------------------- 09.recovered_fraction
def _recovered_cases():
    return [(14.0, 40.0, 20.5), (14.0, 40.0, 40.0), (14.0, 40.0, 14.0), (10.0, 30.0, 9.0),
            (14.0, 14.0, 13.0), (14.0, 13.5, 13.0)]


@exercise(title="the share of PTQ's damage that QAT undoes", cases=_recovered_cases,
          hint="(ppl_ptq - ppl_qat) / (ppl_ptq - ppl_fp32), and 0.0 when ppl_ptq <= ppl_fp32.")
def recovered_fraction(ppl_fp32: float, ppl_ptq: float, ppl_qat: float) -> float:
    """The share of the damage PTQ did that QAT undoes; 0.0 when PTQ did no damage."""
    if ppl_ptq <= ppl_fp32:
        return 0.0
    return (ppl_ptq - ppl_qat) / (ppl_ptq - ppl_fp32)
