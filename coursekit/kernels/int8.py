"""int8 weights, one symmetric scale per output channel, multiplied by ``_weight_int8pack_mm``.

The codes are those of the readable ``coursekit.layers.W8A16Linear``; this layer only hands them to
PyTorch's fused CPU kernel instead of dequantizing the whole weight first.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks, layers
from .base import _ALIGN, _aligned, _check_linear, _WeightOnlyLinear

__all__ = ["Int8WeightLinear", "INT8_K_MULTIPLE"]

#: in_features must be a multiple of this for the int8 kernel (its AVX-512 loop reads 16 at a time).
INT8_K_MULTIPLE = 16


# --------------------------------------------------------------------------- int8
class Int8WeightLinear(_WeightOnlyLinear):
    """A linear layer with int8 weights that multiplies on the codes (``_weight_int8pack_mm``).

    Buffers (exactly what is stored):
      int8_weight  (out_features, in_features) int8, symmetric codes in [-127, 127]
      scales       (out_features,) bf16, one per output channel (the kernel wants x's dtype: bf16)
      bias         (out_features,) in the Linear's dtype, or None

    weight = int8_weight * scales[:, None]; the codes are those of ``coursekit.quant.quantize(w,
    bits=8, symmetric=True, granularity="per_channel")`` (and of ``W8A16Linear``), the scales the
    same rounded to bf16. CPU calls need in_features % 16 == 0; other sizes take the fallback.
    """

    KERNEL = "aten int8 kernel"

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = checks.check_int(in_features, "in_features", low=1)
        self.out_features = checks.check_int(out_features, "out_features", low=1)
        self.register_buffer("int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.bfloat16, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self.path = None        # set by every call

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightLinear":
        """Quantize an ``nn.Linear``: symmetric int8, one scale per output channel.

        A meta Linear gives an empty layer (fill it with ``load_state_dict(sd, assign=True)``)."""
        w = _check_linear(linear).weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, dtype=w.dtype,
                    device=w.device)
        if w.is_meta:
            return layer
        codes, scales = layers.int8_per_channel(w)      # the readable W8A16Linear's codes
        layer.int8_weight.copy_(codes)
        layer.scales.copy_(scales)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def _codes(self) -> torch.Tensor:
        return self.int8_weight

    def _kernel_blocker(self) -> str | None:
        if self.in_features % INT8_K_MULTIPLE:
            return (f"fallback: in_features={self.in_features} is not a multiple of {INT8_K_MULTIPLE} "
                    "(the int8 kernel's vector loop would read past the rows)")
        return None

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """int8_weight * scales: (out_features, in_features), in ``dtype`` (default fp32)."""
        dtype = torch.float32 if dtype is None else dtype
        return self.int8_weight.to(dtype) * self.scales.to(dtype)[:, None]

    def _kernel_mm(self, x_bf16: torch.Tensor) -> torch.Tensor:
        if self.int8_weight.data_ptr() % _ALIGN:      # e.g. loaded with assign=True from a file
            self.int8_weight = _aligned(self.int8_weight)
        return torch.ops.aten._weight_int8pack_mm(x_bf16, self.int8_weight, self.scales)

    def _repr_extra(self) -> str:
        return ", int8 per-channel"
