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


@exercise(forbid=("coursekit.quant.fake_quantize", "coursekit.quant.quantize"),
          title="fake quantization on a symmetric grid", cases=_fake_quant_cases, points=2,
          hint=("quantize, then dequantize right away: the result is floats again, but only values on "
                "the symmetric `bits`-bit grid. The largest |x| must land exactly on a code, and the "
                "negative side has one code more than the positive: which of the two can hold it in "
                "both signs? An all-zero x must come back as zeros, without NaN.",
                "the scale is the largest |x| divided by the largest positive code, 2**(bits-1) - 1 "
                "(3 for 3 bits), so both x.max() and -x.max() are on the grid.",
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


@exercise(title="rounding with a straight-through gradient",
          forbid=("coursekit.qat.ste_round",), cases=_round_cases,
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


@exercise(title="the gradient that flows through ste_round",
          forbid=("coursekit.qat.ste_round",), cases=_grad_cases,
          hint=("autograd fills in .grad only on a tensor that requires a gradient, and only after "
                "backward() on a scalar built from it. Which scalar? The loss of the exercise's text, with "
                "the square, built with your own ste_round, on a copy of x. Expect neither zeros nor upstream.",
                "x = x.clone().requires_grad_(True); (ste_round(x) ** 2 * upstream).sum().backward(); return "
                "x.grad. With a straight-through round that is 2 * round(x) * upstream; zeros mean your "
                "ste_round is plain rounding, whose gradient is 0."))
def ste_grad(x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """d/dx of (ste_round(x) ** 2 * upstream).sum(): 2 * round(x) * upstream under the STE.

    The square makes the answer depend on the rounded values: returning `upstream` unchanged, or
    the gradient of the unrounded x ** 2, does not pass.
    """
    x = x.clone().requires_grad_(True)
    (ste_round(x) ** 2 * upstream).sum().backward()
    return x.grad


# --------------------------------------------------------------------------- 09.what_the_controls_show
@exercise(title="what the controls show", choices=("a", "b", "c", "d"),
          hint=("compare each QAT row with the PTQ row of the same grid, and read the change against its noise "
                "floor; look at the float fine-tune first: did the recipe itself change the model?",
                "per tensor, QAT beats PTQ and beats fine-tuning in float then quantizing by far; per channel and "
                "per group the QAT rows are at most a few percent better than PTQ, near or within the noise "
                "floor, and the float fine-tune shows no reliable difference from fp32."))
def what_the_controls_show():
    """The letter of the statement the notebook's table supports: QAT rescues the coarse grid (the awareness,
    not the extra steps); on finer grids, where PTQ is already close to fp32, it adds a few percent at most."""
    return "b"


# --------------------------------------------------------------------------- 09.ema_absmax
def _ema_cases():
    g = seeded(91)
    return [
        (torch.tensor([2.0, 4.0, 4.0, 1.0]), 0.5),                 # the notebook's example
        (torch.tensor([3.0]), 0.9),                               # one batch: its own maximum
        (torch.tensor([1.0, 10.0, 1.0, 1.0, 1.0]), 0.9),          # a spike fades slowly
        (torch.tensor([1.0, 10.0, 1.0, 1.0, 1.0]), 0.0),          # momentum 0: the last batch only
        (torch.tensor([5.0, 7.0, 9.0]), 1.0),                     # momentum 1: the first batch forever
        (torch.rand(50, generator=g) * 3, 0.99),
    ]


@exercise(title="a running absmax observer", cases=_ema_cases,
          hint=("the first batch has no history, so it starts the estimate on its own; after that each new "
                "batch only nudges the estimate, by a share that the momentum decides (momentum 0 forgets "
                "everything, momentum 1 never changes). Return one value per batch, as a float32 tensor.",
                "estimate = maxima[0]; then for each later m: estimate = momentum * estimate + (1 - momentum) "
                "* m; collect the estimate after every batch in a list and return torch.tensor(list)."))
def ema_absmax(maxima, momentum):
    """The observer's range after each batch: an exponential moving average of the batch maxima."""
    estimates = [maxima[0].item()]
    for m in maxima[1:].tolist():
        estimates.append(momentum * estimates[-1] + (1 - momentum) * m)
    return torch.tensor(estimates, dtype=torch.float32)
