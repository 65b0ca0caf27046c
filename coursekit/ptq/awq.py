"""AWQ, activation-aware weight quantization (Lin et al., 2023): protect the weights that matter.

A weight's rounding error reaches the output multiplied by its input: errors on the columns that
meet large activations cost the most. AWQ scales those columns *up* before rounding (and the
input down by the same factor, ``scaling``), so they use more of the grid and their relative
error shrinks; the other columns of their row pay a little, since the row's range grows. How
much to scale is searched, not derived: with a_j the mean |x_j| over calibration tokens,

    s_j = max(a_j ** alpha, 1e-4)          for alpha in 0, 0.05, ..., 0.95   (20 points)

keeping the alpha whose quantized layers reproduce the calibration outputs best: the mean of
(X (Q(W * s) / s - W)^T)^2 over the outputs of all the layers that share the input. alpha = 0 is
plain RTN, so on calibration data AWQ never does worse than RTN. The mean needs no tokens: for a
weight error D = Q(W * s) / s - W it is tr(D H D^T) / out_features with H = X^T X / n, which the
calibration has summed up already, over every calibration token. Then every weight is rounded to
nearest: the method changes which grid each weight sees, not how it rounds.

What follows mit-han-lab's llm-awq (``auto_scale.py``), and where this module departs from it:

* the same 20-point grid, the same clamp and centring of s, and the same order: every input
  group is searched on the *original* weights, then all the scales are applied (a layer whose
  rows absorb a later group's division, such as v_proj for o_proj, was searched without it).
  Against the 11-point grid (0, 0.1, ..., 1) that this module used before, measured on the
  course LM's 16 input groups per channel: the search loss is the same or lower in every group,
  0.4 % lower on average and up to 2.8 % (alpha = 1, which only the 11 points hold, never won).
* o_proj is left alone (plain RTN) where v_proj cannot absorb its division, as llm-awq does:
  with grouped-query attention v_proj has fewer outputs (one per key/value head) than o_proj has
  inputs. Scaling it anyway would leave a runtime divide in front of the layer. Measured on
  SmolLM2-135M (9 heads, 3 key/value heads), int4 per channel, calibrated on 32 KJV texts:
  held-out perplexity 21.87 with the skip against 22.08 without (RTN 24.06, fp32 13.60).
* q/k/v and gate/up are scored on their own outputs (this objective), where llm-awq scores the
  output of the whole attention (softmax, o_proj) or MLP block, unquantized but for the group.
  A block's output needs the block's own input tokens, which the calibration's statistics do
  not hold; the per-layer objective is also the one the lesson derives. The two do not pick the same alpha:
  on the course LM's four MLPs, per channel, the block's output picks alpha 0-0.3 at 4 bits where
  the layers' own outputs pick 0.3-0.4, and the per-layer choice leaves a block loss 0-16 % above
  the block's best (2-8 % at 3 bits); on SmolLM2's 30 MLPs at 4 bits, within 5 % in 24 of them,
  12-26 % above in three and 2-3.7 times the best in three.
* the grid is the one of every method here (the range widened to include 0, ``grid``), where
  llm-awq's spans min..max: the two are equal whenever a group holds both signs;
* no clipping search (llm-awq's ``auto_clip``).

Where no producer can absorb the division at all (BERT's post-LN LayerNorms, the GELU before
BERT's output.dense) it stays as an ``InputScaled`` wrapper, as llm-awq's ``ScaledActivation`` does
for models with a GELU.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from .calibration import Calibration
from .grid import rtn_dequantized
from .rtn import rtn_layer
from .scaling import (check_layers, divide_input, linear_of, replace_linear_in, scale_columns,
                      unabsorbed_channelwise)

ALPHAS = tuple(i / 20 for i in range(20))
MIN_SCALE = 1e-4        # llm-awq's floor on a_j ** alpha (a channel that was always 0)


def candidate_scales(mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = max(mean|x_j| ** alpha, 1e-4), centred so that max(s) * min(s) = 1 (a pure convenience)."""
    s = mean_abs.float().pow(alpha).clamp(min=MIN_SCALE)
    return s / (s.max() * s.min()).sqrt()


def output_error(d: torch.Tensor, h: torch.Tensor) -> float:
    """Sum over the calibration tokens' outputs of (x D^T)^2, divided by n: tr(D H D^T)."""
    return float(((d @ h) * d).sum())


@torch.no_grad()
def search_scale(mean_abs: torch.Tensor, h: torch.Tensor, weights: list[torch.Tensor], bits: int,
                 group_size: int | None, alphas=ALPHAS):
    """The best s for one input group: returns (s, alpha, errors per alpha).

    ``mean_abs`` and ``h``: the group's input statistics (``Calibration.mean_abs``, ``.hessian``).
    The error of an alpha is the mean squared difference over the outputs of all the group's
    layers (their outputs side by side), so a layer with more outputs weighs more. Each candidate
    in ``alphas`` costs one (out x in) @ (in x in) product per layer: the search is AWQ's cost.
    """
    n_out = sum(w.shape[0] for w in weights)
    h = h.float()
    errors, best = [], None
    for alpha in alphas:
        s = candidate_scales(mean_abs, alpha)
        err = sum(output_error(rtn_dequantized(w * s, bits, group_size) / s - w, h) for w in weights) / n_out
        errors.append(err)
        if best is None or err < best[0]:
            best = (err, s, alpha)
    return best[1], best[2], errors


def searched_groups(model: nn.Module, calibration: Calibration) -> list[list[str]]:
    """The input groups AWQ scales: all but o_proj where v_proj cannot absorb its division."""
    return [g for g in calibration.groups if not unabsorbed_channelwise(model, g)]


@torch.no_grad()
def awq(model: nn.Module, calibration: Calibration, bits: int = 4, group_size: int | None = 128,
        alphas=ALPHAS) -> nn.Module:
    """Search per-channel scales on ``calibration``, then round to nearest (in place); returns model.

    ``group_size=None`` quantizes per output channel. ``alphas``: the exponents tried (default
    0, 0.05, ..., 0.95, as llm-awq's grid of 20; fewer cost proportionally less time). The chosen alpha of each scaled input group
    is kept in ``model.awq_alphas`` (name of the group's first layer -> alpha); the groups left
    alone (o_proj under grouped-query attention) are listed in ``model.awq_skipped``.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    names = [n for g in calibration.groups for n in g]
    bits, group_size = check_layers(model, names, bits, group_size)     # all of them before changing any
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__len__") or len(alphas) == 0:
        checks.fail("alphas", "a non-empty sequence of exponents in [0, 1]", repr(alphas), TypeError)
    alphas = tuple(checks.check_number(a, "alphas", 0.0, 1.0) for a in alphas)
    groups = searched_groups(model, calibration)
    found = {}
    for group in groups:                             # every search on the original weights ...
        weights = [linear_of(model, n).weight.float() for n in group]
        found[group[0]] = search_scale(calibration.mean_abs(group[0]), calibration.hessian(group[0]), weights,
                                       bits, group_size, alphas)
    for group in reversed(groups):                   # ... then applied, consumers first: v_proj still
        s, alpha, _ = found[group[0]]                # a Linear when o_proj's division folds into it
        if alpha > 0.0:                              # alpha 0 is plain RTN: nothing to scale
            scale_columns(model, group, s)
            divide_input(model, group, s)
    replace_linear_in(model, names, lambda m: rtn_layer(m, bits, group_size))
    model.awq_alphas = {first: alpha for first, (_, alpha, _) in found.items()}
    model.awq_skipped = [g[0] for g in calibration.groups if g not in groups]
    return model
