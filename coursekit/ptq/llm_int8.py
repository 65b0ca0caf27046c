"""LLM.int8() (Dettmers et al., 2022): keep the few outlier input channels out of int8.

In transformers past a certain size, a handful of hidden dimensions carry activations tens of
times larger than the rest, in every layer and for almost every token. One int8 scale per token
must then stretch to cover them, and every ordinary value of that token lands on a few codes.
The paper's answer is a *decomposition* of the matmul: the input columns j where some |x_j| exceeds
a threshold (6.0 in the paper) are multiplied in high precision, everything else in int8 with a
scale per token (rows of x) and per output channel (rows of W), "vector-wise" quantization:

    x @ W.T = x[:, O] @ W[:, O].T  +  x[:, R] @ W[:, R].T         (O outliers, R the rest)

The split is exact; only the second term is quantized. Weights are stored once, in int8: the
outlier columns use them dequantized, as in bitsandbytes. On this course's encoder the outlier
set is a few channels out of 384, so almost all of the compute stays int8.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from ..layers import linear_names, replace_modules
from .act_layers import absmax_scale, int8_codes
from .calibration import DEFAULT_EXCLUDE

DEFAULT_THRESHOLD = 6.0


def outlier_columns(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean mask of the input channels where any token's |x| exceeds ``threshold``."""
    return (x.reshape(-1, x.shape[-1]).abs() > threshold).any(dim=0)


def _split_matmul(x, out, w_high, w_low, w_low_scale=None):
    """x[..., O] @ w_high.T + x[..., R] @ w_low.T, the one place the decomposition is written.

    ``w_high``: the weight's outlier columns, in float; ``w_low``: its other columns, in float when
    ``w_low_scale`` is None (no rounding anywhere), else int8 codes with one scale per output row,
    met by x[..., R] quantized with one absmax scale per token (vector-wise).
    """
    high = x[..., out] @ w_high.T
    x_rest = x[..., ~out]
    if w_low_scale is None:
        return high + x_rest @ w_low.T
    xs = absmax_scale(x_rest, dim=-1)
    return high + (int8_codes(x_rest, xs) @ w_low.T) * xs * w_low_scale


def outlier_split_matmul(x: torch.Tensor, w: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                         quantize: bool = True) -> torch.Tensor:
    """x @ w.T with outlier channels in float and the rest in vector-wise int8.

    The int8 weight rows are scaled by their largest |w| over the non-outlier columns (what the
    notebook's exercise asks for). ``quantize=False`` does the same split without rounding: the
    result equals x @ w.T (up to float summation order), which is how a test shows the
    decomposition itself loses nothing.
    """
    checks.check_tensor(x, "x", floating=True)
    checks.check_tensor(w, "w", floating=True, ndim=2)
    if x.shape[-1] != w.shape[1]:
        checks.fail("w", f"a weight with in_features {x.shape[-1]} (the last dim of x)", f"shape {tuple(w.shape)}")
    threshold = checks.check_number(threshold, "threshold", positive=True)
    checks.check_instance(quantize, "quantize", bool, "True or False")
    out = outlier_columns(x, threshold)
    w_rest = w[:, ~out]
    if not quantize:
        return _split_matmul(x, out, w[:, out], w_rest)
    ws = absmax_scale(w_rest, dim=1)
    return _split_matmul(x, out, w[:, out], int8_codes(w_rest, ws), ws.reshape(-1))


class Int8OutlierLinear(nn.Module):
    """int8 weights, one scale per output row over *all* columns (stored once, as bitsandbytes
    does); the matmul split as in ``outlier_split_matmul``, the outlier columns meeting the
    dequantized weights. Computes in float32 and returns the input's dtype, so that a bf16 model
    keeps running (the next LayerNorm would refuse a float32 input with bf16 weights)."""

    def __init__(self, linear: nn.Linear, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        w = linear.weight.detach().float()
        self.threshold = checks.check_number(threshold, "threshold", positive=True)
        scale = absmax_scale(w, dim=1)
        self.register_buffer("int8_weight", int8_codes(w, scale).to(torch.int8))
        self.register_buffer("weight_scale", scale.reshape(-1))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.last_outliers = 0      # how many channels the last call kept in float (for the lesson)
        self.kept = torch.zeros(w.shape[1], dtype=torch.bool)   # ... and every call since creation

    @property
    def channels_kept(self) -> int:
        """How many input channels at least one call since creation (or ``reset_kept``) kept in float."""
        return int(self.kept.sum())

    def reset_kept(self) -> None:
        self.kept = torch.zeros_like(self.kept)

    def forward(self, x):
        out = outlier_columns(x, self.threshold)
        self.last_outliers = int(out.sum())
        self.kept = self.kept.to(out.device) | out
        codes = self.int8_weight.float()
        y = _split_matmul(x.float(), out, codes[:, out] * self.weight_scale[:, None], codes[:, ~out],
                          self.weight_scale)
        return (y if self.bias is None else y + self.bias).to(x.dtype)


def llm_int8(model: nn.Module, threshold: float = DEFAULT_THRESHOLD, exclude=DEFAULT_EXCLUDE) -> nn.Module:
    """Replace, in place, every nn.Linear (but ``exclude``) by an ``Int8OutlierLinear``; returns model.

    Needs no calibration: the outlier channels are found in each input as it comes.
    """
    threshold = checks.check_number(threshold, "threshold", positive=True)
    return replace_modules(model, linear_names(model, exclude), lambda m: Int8OutlierLinear(m, threshold))
