"""SmoothQuant (Xiao et al., 2022): move the activations' outliers into the weights, then W8A8.

Activation outliers live in a few fixed input channels; weights have none to speak of. Dividing
input channel j by s_j and multiplying weight column j by s_j leaves x @ W.T unchanged
(``scaling``) but changes what each side must quantize. With

    s_j = max|x_j| ** alpha / max|W[:, j]| ** (1 - alpha)

channel j of the activations ends with the range max|x_j| / s_j = (max|x_j| * max|W_j|)^(1-alpha)
and column j of the weights with max|W_j| * s_j = (max|x_j| * max|W_j|)^alpha: the product of the
two ranges is unchanged, and ``alpha`` says how much of it (on a log scale) the weights take
(0: none, 1: all; 0.5 splits it evenly, both sides at sqrt(max|x_j| * max|W_j|), the paper's
default for most models).
One s serves all layers that read the same input.

As in the paper, only the layers that read a normalization's output are smoothed (attention's
query/key/value, the MLP's first layer): that is where the outlier channels are. The input of the
MLP's second layer comes out of a GELU; smoothing it was measured here to *lower* the encoder's
agreement (mean cosine 0.926 against 0.955 unsmoothed), so it is left alone, as is the attention
output projection (no gain measured). After smoothing, every layer
becomes a ``W8A8Linear``: per-tensor int8 for both weights and (static) activations, the cheapest
integer pipeline, the one outliers wreck without smoothing.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from .act_layers import W8A8Linear, resolve_scheme
from .calibration import Calibration
from .scaling import divide_input, linear_of, replace_linear_in, scale_columns


#: The layers (last name component) that read a norm's output, in BERT and in Llama.
NORM_FED = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


def _is_norm_fed(name: str) -> bool:
    return name.split(".")[-1] in NORM_FED or name.endswith("intermediate.dense")


def smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """s = act_absmax**alpha / weight_absmax**(1-alpha), per input channel; 1 where a side is 0."""
    a = act_absmax.float().clamp(min=1e-5)
    w = weight_absmax.float().clamp(min=1e-5)
    s = a.pow(alpha) / w.pow(1 - alpha)
    dead = (act_absmax == 0) | (weight_absmax == 0)
    return torch.where(dead, torch.ones_like(s), s)


def _check(model, calibration, alpha):
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    return checks.check_number(alpha, "alpha", 0.0, 1.0)


@torch.no_grad()
def smooth(model: nn.Module, calibration: Calibration, alpha: float = 0.5) -> dict[str, torch.Tensor]:
    """Apply the smoothing only (the model computes the same function); returns s per group's first layer."""
    alpha = _check(model, calibration, alpha)
    chosen = {}
    for group in reversed([g for g in calibration.groups if _is_norm_fed(g[0])]):   # consumers first: folds into a producer precede its own s
        act = calibration.absmax(group[0])
        w = torch.stack([linear_of(model, n).weight.abs().amax(dim=0) for n in group]).amax(dim=0)
        s = smoothing_scales(act, w, alpha)
        scale_columns(model, group, s)
        divide_input(model, group, s)
        chosen[group[0]] = s
    return chosen


@torch.no_grad()
def w8a8(model: nn.Module, calibration: Calibration, scheme: str = "per_tensor",
         smoothing: dict | None = None, activations: str | None = None, weights: str | None = None) -> nn.Module:
    """Replace every calibrated linear by a W8A8Linear (in place); returns model.

    ``scheme`` picks a classic pipeline ("per_tensor": static activations, per-tensor weights;
    "per_token": per-token activations, per-channel weights); ``activations`` ("static",
    "dynamic", "per_token") or ``weights`` ("per_tensor", "per_channel") change one of its two
    choices, the controls that tell which one matters. The static activation scale comes from the
    calibration's max |x|, divided by the smoothing s of the layer's group when the model was
    smoothed first.
    """
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    acts, weights = resolve_scheme(scheme, activations, weights)
    smoothing = smoothing or {}
    for group in calibration.groups:
        act = calibration.absmax(group[0])
        if group[0] in smoothing:
            act = act / smoothing[group[0]]
        replace_linear_in(model, group, lambda m: W8A8Linear.from_linear(m, act, activations=acts, weights=weights))
    return model


def smoothquant(model: nn.Module, calibration: Calibration, alpha: float = 0.5,
                scheme: str = "per_tensor", activations: str | None = None,
                weights: str | None = None) -> nn.Module:
    """Smooth with ``alpha``, then quantize every calibrated linear to W8A8 (in place); returns model."""
    _check(model, calibration, alpha)
    resolve_scheme(scheme, activations, weights)           # a bad choice fails before any change
    return w8a8(model, calibration, scheme, smooth(model, calibration, alpha), activations, weights)
