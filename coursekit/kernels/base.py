"""What the int8 and int4 layers share: the fallback rule, aligned inputs and the forward skeleton.

A subclass names its kernel (``KERNEL``), stores its codes (``_codes``), says when the kernel cannot
run (``_kernel_blocker``) and computes on the codes (``_kernel_mm``); this class decides which path a
call takes and records it in ``layer.path``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks

_ALIGN = 64     # bytes; PyTorch's CPU allocator aligns to 64, views with an offset may not be


# --------------------------------------------------------------------------- shared helpers
def _check_linear(linear) -> nn.Linear:
    return checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """t, or a fresh (64-byte aligned) copy when its data does not start on a 64-byte boundary."""
    return t if t.data_ptr() % _ALIGN == 0 else t.clone(memory_format=torch.contiguous_format)


def _fallback_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"fallback: weights on {device.type} (these fused kernels are CPU-only)"
    return None


class _WeightOnlyLinear(nn.Module):
    """What both layers share: the path bookkeeping, bias handling and the forward skeleton."""

    KERNEL = ""          # the words for the fused path, e.g. "aten int8 kernel"

    def _kernel_blocker(self) -> str | None:
        """Why this layer cannot use the kernel for a CPU call (None if it can)."""
        return None

    def kernel_path(self) -> str:
        """The path a call takes now: the kernel's name, or "fallback: <reason>"."""
        return _fallback_reason(self._codes().device) or self._kernel_blocker() or self.KERNEL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.check_tensor(x, "x", floating=True)
        if x.shape[-1] != self.in_features:
            checks.fail("x", f"a last dimension of {self.in_features} (in_features)", f"shape {tuple(x.shape)}")
        self.path = self.kernel_path()
        x2 = x.reshape(-1, self.in_features)
        if self.path == self.KERNEL:
            y = self._kernel_mm(_aligned(x2.to(torch.bfloat16).contiguous())).to(x.dtype)
        else:
            y = F.linear(x2, self.dequantized_weight(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{self._repr_extra()}, path={self.kernel_path()!r}")
