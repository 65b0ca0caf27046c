"""AWQ, activation-aware weight quantization (Lin et al., 2023): protect the weights that matter.

A weight's rounding error reaches the output multiplied by its input: errors on the columns that
meet large activations cost the most. AWQ scales those columns *up* before rounding (and the
input down by the same factor, ``scaling``), so they use more of the grid and their relative
error shrinks; the other columns of their row pay a little, since the row's range grows. How
much to scale is searched, not derived: with a_j the mean |x_j| over calibration tokens,

    s_j = a_j ** alpha          for alpha in 0, 0.1, ..., 1

keeping the alpha whose quantized layers reproduce the calibration outputs best
(|| X (Q(W * s) / s - W)^T ||^2, summed over the layers that share the input). alpha = 0 is plain
RTN, so on calibration data AWQ never does worse than RTN. Then every weight is rounded to
nearest: the method changes which grid each weight sees, not how it rounds. (The paper also
searches a clipping range per group; this module does not.)
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from .calibration import Calibration
from .grid import check_weight_args, rtn_dequantized
from .rtn import rtn_layer
from .scaling import divide_input, linear_of, replace_linear_in, scale_columns

ALPHAS = tuple(i / 10 for i in range(11))
MAX_TOKENS = 1024       # calibration tokens used in the search (evenly spaced): enough, and fast


def _tokens(x: torch.Tensor) -> torch.Tensor:
    step = max(1, x.shape[0] // MAX_TOKENS)
    return x[::step][:MAX_TOKENS]


@torch.no_grad()
def search_scale(x: torch.Tensor, weights: list[torch.Tensor], bits: int, group_size: int | None):
    """The best s for one input group: returns (s, alpha, errors per alpha)."""
    a = x.abs().mean(dim=0).clamp(min=1e-5)
    refs = [x @ w.T for w in weights]
    errors, best = [], None
    for alpha in ALPHAS:
        s = a.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()          # centre the scales around 1 (a pure convenience)
        err = sum(float((x @ (rtn_dequantized(w * s, bits, group_size) / s).T - r).pow(2).mean())
                  for w, r in zip(weights, refs))
        errors.append(err)
        if best is None or err < best[0]:
            best = (err, s, alpha)
    return best[1], best[2], errors


@torch.no_grad()
def awq(model: nn.Module, calibration: Calibration, bits: int = 4, group_size: int | None = 128) -> nn.Module:
    """Search per-channel scales on ``calibration``, then round to nearest (in place); returns model.

    ``group_size=None`` quantizes per output channel. The chosen alpha of each input group is kept
    in ``model.awq_alphas`` (name of the group's first layer -> alpha).
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    bits, group_size = check_weight_args(bits, group_size)
    for group in calibration.groups:
        for n in group:
            check_weight_args(bits, group_size, linear_of(model, n).in_features)
    alphas = {}
    for group in reversed(calibration.groups):   # consumers first: folds into a producer precede its search
        x = _tokens(calibration.inputs[group[0]])
        s, alpha, _ = search_scale(x, [linear_of(model, n).weight.float() for n in group], bits, group_size)
        alphas[group[0]] = alpha
        if alpha == 0.0:
            continue                               # plain RTN won: nothing to scale
        scale_columns(model, group, s)
        divide_input(model, group, s)
    names = [n for g in calibration.groups for n in g]
    replace_linear_in(model, names, lambda m: rtn_layer(m, bits, group_size))
    model.awq_alphas = dict(reversed(list(alphas.items())))
    return model
