"""Layers that quantize activations too (W8A8), and the input divisor that smoothing leaves behind.

* ``W8A8Linear``: int8 weights and int8 activations. Two independent choices say where the scales
  come from. ``activations``: ``"static"``, one scale fixed from calibration (the max |x| seen), as
  a fixed integer pipeline uses; ``"dynamic"``, one scale per sequence computed at run time from
  its own max |x|; ``"per_token"``, one scale per token, at run time. ``weights``: one scale for
  the whole matrix (``"per_tensor"``) or one per output row (``"per_channel"``). ``scheme`` names
  the two classic pipelines: ``"per_tensor"`` (static, per-tensor weights) and ``"per_token"``
  (per-token, per-channel weights); the other combinations are the controls that change one
  thing at a time. The matmul runs on the integer codes (held in float32: every product and
  partial sum is an integer, so this is what an int8 kernel computes up to float32's 24-bit
  mantissa) and the two scales multiply the result.
* ``InputScaled``: ``inner(x / scale)``. SmoothQuant and AWQ divide a layer's input by a per-channel
  vector; where no preceding operation can absorb the division (see ``scaling``), it stays here,
  a vector of ``in_features`` floats that a real kernel fuses into the activation quantization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, quant

#: Where the activation scale comes from, and the weight scale's granularity.
ACTIVATIONS = ("static", "dynamic", "per_token")
WEIGHTS = ("per_tensor", "per_channel")
#: The two classic pipelines by name: scheme -> (activations, weights).
SCHEMES = {"per_tensor": ("static", "per_tensor"), "per_token": ("per_token", "per_channel")}


def resolve_scheme(scheme: str = "per_tensor", activations: str | None = None,
                   weights: str | None = None) -> tuple[str, str]:
    """(activations, weights): those of ``scheme``, each replaced by the argument when given."""
    default_acts, default_weights = SCHEMES[checks.check_choice(scheme, "scheme", SCHEMES)]
    acts = default_acts if activations is None else checks.check_choice(activations, "activations", ACTIVATIONS)
    weights = default_weights if weights is None else checks.check_choice(weights, "weights", WEIGHTS)
    return acts, weights


def int8_codes(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 codes of x on ``scale`` (from ``absmax_scale``: within -127..127), by
    ``quant``'s rounding rule, held in float32 for the matmul."""
    return quant.linear_quantize(x, scale, 0, 8, check=False).float()


def absmax_scale(x: torch.Tensor, dim=None) -> torch.Tensor:
    """max|x| / 127 (over ``dim``, kept for broadcasting; over everything when None): ``quant``'s
    symmetric grid (codes -127..127, so that -x is representable whenever x is; an all-zero row
    gets the scale 1)."""
    if x.numel() == 0:               # no columns left (LLM.int8() when every channel is an outlier)
        shape = () if dim is None else tuple(1 if d == dim % x.dim() else n for d, n in enumerate(x.shape))
        return torch.ones(shape, device=x.device)
    m = (x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)).float()
    return quant.qparams_from_minmax(-m, m, 8, symmetric=True, check=False)[0]


class InputScaled(nn.Module):
    """``inner(x / scale)``: a layer whose input is divided, per channel, by ``scale``."""

    def __init__(self, inner: nn.Module, scale: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("scale", scale.detach().float().clone())

    def forward(self, x):
        return self.inner(x / self.scale.to(x.dtype))


class W8A8Linear(nn.Module):
    """int8 weights x int8 activations. Buffers: ``int8_weight`` (out, in), ``weight_scale``
    (1 or out entries), ``act_scale`` (the static activation scale; unused by the run-time
    schemes), ``bias``. ``activations`` and ``weights``: see the module's docstring."""

    def __init__(self, int8_weight, weight_scale, act_scale, bias, activations: str = "static",
                 weights: str = "per_tensor"):
        super().__init__()
        self.activations = checks.check_choice(activations, "activations", ACTIVATIONS)
        self.weights = checks.check_choice(weights, "weights", WEIGHTS)
        self.register_buffer("int8_weight", int8_weight.to(torch.int8))
        self.register_buffer("weight_scale", weight_scale.float().reshape(-1))
        self.register_buffer("act_scale", act_scale.float().reshape(1))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, act_absmax: torch.Tensor | None = None,
                    scheme: str = "per_tensor", activations: str | None = None,
                    weights: str | None = None) -> "W8A8Linear":
        """Quantize ``linear``; ``act_absmax`` (max |x| per input channel, from calibration) sets
        the static activation scale. ``activations``/``weights`` override the scheme's."""
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        acts, weights = resolve_scheme(scheme, activations, weights)
        w = linear.weight.detach().float()
        w_scale = absmax_scale(w) if weights == "per_tensor" else absmax_scale(w, dim=1)
        if acts == "static":
            if act_absmax is None:
                checks.fail("act_absmax", "calibrated max |x| per input channel (static activations)", None)
            a_scale = absmax_scale(act_absmax)
        else:
            a_scale = torch.ones(1)
        return cls(int8_codes(w, w_scale), w_scale, a_scale, linear.bias, acts, weights)

    @property
    def scheme(self) -> str:
        """The classic pipeline's name, or "activations/weights" for a control."""
        names = {v: k for k, v in SCHEMES.items()}
        return names.get((self.activations, self.weights), f"{self.activations}/{self.weights}")

    def activation_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The scale x is rounded on: calibrated, per sequence (all but the last two dims kept;
        the whole tensor when x is 2-D), or per token."""
        if self.activations == "static":
            return self.act_scale
        if self.activations == "per_token":
            return absmax_scale(x, dim=-1)
        if x.dim() <= 2:
            return absmax_scale(x)
        return absmax_scale(x.flatten(-2), dim=-1).unsqueeze(-1)

    def forward(self, x):
        a_scale = self.activation_scale(x)
        y = F.linear(int8_codes(x.float(), a_scale), self.int8_weight.float())
        y = y * a_scale * self.weight_scale
        return (y if self.bias is None else y + self.bias).to(x.dtype)

    def extra_repr(self):
        return (f"in={self.int8_weight.shape[1]}, out={self.int8_weight.shape[0]}, "
                f"activations={self.activations}, weights={self.weights}")
