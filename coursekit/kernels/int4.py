"""4-bit group-wise weights, packed for ``_weight_int4pack_mm_for_cpu``, and read back exactly.

The kernel's byte order depends on the CPU, so the codes are never unpacked by hand: the kernel
itself reads them back (``_unpack_int4``), and checkpoints store them in coursekit's portable order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, packing, quant
from .base import _check_linear, _WeightOnlyLinear

__all__ = ["Int4WeightLinear", "INT4_GROUP_SIZES", "INT4_ROW_BLOCK"]

#: Group sizes ``_weight_int4pack_mm_for_cpu`` accepts.
INT4_GROUP_SIZES = (32, 64, 128, 256)
#: Rows the int4 packing works on at a time: out_features is padded up to a multiple of it.
INT4_ROW_BLOCK = 16
_UNPACK_ROWS = 512      # rows of the identity per call when reading int4 codes back (``_unpack_int4``)


# --------------------------------------------------------------------------- int4 packing
def _pack_int4(unsigned_codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes in [0, 15], N a multiple of 16 -> the kernel's uint8 (N, K / 2), packed on the CPU."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned_codes.to("cpu", torch.int32), 1)


def _unpack_int4(packed: torch.Tensor, group_size: int) -> torch.Tensor:
    """The codes (N, K) uint8 that the kernel reads from ``packed``, whatever its byte order.

    The kernel computes x @ ((u - 8) * scale + zero).T; with scale 1 and zero 8 that is x @ u.T,
    so the identity matrix as x returns the codes themselves, exactly (integers 0..15 in bf16).
    It runs on the CPU, a slice of the identity's rows at a time (never a K x K matrix).
    """
    packed, k = packed.cpu(), packed.shape[1] * 2
    unit = torch.tensor([1.0, 8.0], dtype=torch.bfloat16).expand(k // group_size, packed.shape[0], 2).contiguous()
    eyes = (F.one_hot(torch.arange(k0, min(k0 + _UNPACK_ROWS, k)), k).to(torch.bfloat16)
            for k0 in range(0, k, _UNPACK_ROWS))
    return torch.cat([torch.ops.aten._weight_int4pack_mm_for_cpu(eye, packed, group_size, unit)
                      for eye in eyes]).t().to(torch.uint8)


# --------------------------------------------------------------------------- int4
class Int4WeightLinear(_WeightOnlyLinear):
    """A linear layer with 4-bit group-wise weights that multiplies on the packed codes.

    Buffers (exactly what is stored):
      packed_weight     (rows, in_features / 2) uint8: two codes a byte, in the byte order of this
                        CPU's kernels (it differs between AVX-512, AVX2 and the rest)
      scales_and_zeros  (in_features / group_size, rows, 2) bf16: scale, zero per group
      bias              (out_features,) in the Linear's dtype, or None
    rows is out_features rounded up to a multiple of 16, the kernel's row block (as torchao pads);
    the padding rows hold code 8, scale 1 and zero 0 (a zero weight), and the output drops them.

    weight[o, g*G + j] = (u - 8) * scale[g, o] + zero[g, o], u the unsigned code. The signed codes
    u - 8 and the grid are those of ``coursekit.quant.quantize(w, bits=4, symmetric=False,
    granularity="per_group", group_size=G)`` (as in ``W4A16Linear``): scale rounded to bf16 and
    zero = -zero_point * scale, rounded to bf16 (off the exact grid by at most 1/64 of a step).
    group_size must be one of 32, 64, 128, 256 and divide in_features, or construction refuses.

    The state dict holds the codes in a portable order instead (``coursekit.packing.pack`` of the
    (rows, in_features) codes, row after row, first code in the low nibble), so a checkpoint
    written on one CPU loads on any other; loading packs them for this CPU's kernels.
    """

    KERNEL = "aten int4 kernel"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = checks.check_int(in_features, "in_features", low=1)
        self.out_features = checks.check_int(out_features, "out_features", low=1)
        self.group_size = _check_int4_shape(in_features, group_size)
        rows = -(-out_features // INT4_ROW_BLOCK) * INT4_ROW_BLOCK          # padded, as torchao does
        n_groups = in_features // self.group_size
        self.register_buffer("packed_weight", torch.zeros(rows, in_features // 2, dtype=torch.uint8, device=device))
        sz = torch.zeros(n_groups, rows, 2, dtype=torch.bfloat16, device=device)
        sz[..., 0] = 1
        self.register_buffer("scales_and_zeros", sz)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self.path = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128) -> "Int4WeightLinear":
        """Quantize an ``nn.Linear`` to asymmetric int4 groups of ``group_size`` inputs.

        A meta Linear gives an empty layer (fill it with ``load_state_dict(sd, assign=True)``)."""
        w = _check_linear(linear).weight.detach()
        _check_int4_shape(linear.in_features, group_size, "linear.")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, group_size=group_size,
                    dtype=w.dtype, device=w.device)
        if w.is_meta:
            return layer
        q = quant.quantize(w, bits=4, symmetric=False, granularity="per_group", group_size=group_size)
        pad = layer.packed_weight.shape[0] - linear.out_features
        codes = F.pad(q.data.to(torch.int32) + 8, (0, 0, 0, pad), value=8)      # padding rows: weight 0
        layer.packed_weight.copy_(_pack_int4(codes))
        scale = q.scale.to(torch.bfloat16)                                     # (N, n_groups)
        zero = (-q.zero_point.float() * scale.float()).to(torch.bfloat16)
        layer.scales_and_zeros[:, :linear.out_features].copy_(torch.stack([scale, zero], -1).transpose(0, 1))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def _codes(self) -> torch.Tensor:
        return self.packed_weight

    def unsigned_codes(self) -> torch.Tensor:
        """The codes u in [0, 15], (out_features, in_features) uint8 (signed code = u - 8)."""
        if self.packed_weight.is_meta:
            return torch.empty(self.out_features, self.in_features, dtype=torch.uint8, device="meta")
        codes = _unpack_int4(self.packed_weight, self.group_size)[:self.out_features]
        return codes.to(self.packed_weight.device)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(u - 8) * scale + zero: (out_features, in_features), in ``dtype`` (default fp32)."""
        dtype = torch.float32 if dtype is None else dtype
        sz = self.scales_and_zeros[:, :self.out_features].float()             # (n_groups, N, 2)
        u = self.unsigned_codes().view(self.out_features, -1, self.group_size).float()
        w = (u - 8) * sz[..., 0].t().unsqueeze(-1) + sz[..., 1].t().unsqueeze(-1)
        return w.reshape(self.out_features, self.in_features).to(dtype)

    def _kernel_mm(self, x_bf16: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x_bf16, self.packed_weight, self.group_size,
                                                       self.scales_and_zeros)
        return y[:, :self.out_features]

    # The state dict holds the portable order (see the class doc); memory holds the kernel's.
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if not self.packed_weight.is_meta:
            codes = _unpack_int4(self.packed_weight, self.group_size)
            destination[prefix + "packed_weight"] = packing.pack(codes, 4).view(codes.shape[0], -1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "packed_weight"
        portable = state_dict.get(key)
        if isinstance(portable, torch.Tensor) and not portable.is_meta:
            codes = packing.unpack(portable.cpu(), 4, portable.numel() * 2).view(portable.shape[0], -1)
            state_dict[key] = _pack_int4(codes).to(portable.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _repr_extra(self) -> str:
        return f", int4 group_size={self.group_size}"


def _check_int4_shape(in_features: int, group_size, prefix: str = "") -> int:
    """group_size one the kernel takes, dividing in_features (out_features is padded instead).

    ``prefix`` ("linear.") names the features as the caller passed them."""
    group_size = checks.check_choice(group_size, "group_size", INT4_GROUP_SIZES)
    if in_features % group_size:
        fits = [g for g in INT4_GROUP_SIZES if in_features % g == 0]
        checks.fail("group_size", f"one of {INT4_GROUP_SIZES} that divides {prefix}in_features ({in_features})"
                    + (f": {fits}" if fits else "; none does, so this layer cannot take the int4 kernel"),
                    group_size)
    return group_size
