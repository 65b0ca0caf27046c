"""FP8 with a scale: E4M3 and E5M2 through torch's own float8 dtypes.

The two FP8 formats of the OCP 8-bit floating point spec (also NVIDIA's H100 and torch):
E4M3 (``torch.float8_e4m3fn``, largest 448, no inf) for weights and activations, E5M2
(``torch.float8_e5m2``, largest 57344, IEEE-like) for gradients. Their range is small compared
with a model's weights only in one direction: tiny weights underflow into the few subnormals. So
FP8 is used with a scale that maps the tensor's (or each row's) largest magnitude onto the
format's largest value: ``codes = fp8(x / s)``, ``x ~ s * codes``, with s kept in float32.
"""

from __future__ import annotations

import torch

from .scales import divisor

__all__ = ["FP8_DTYPES", "encode_blocks", "decode_blocks"]

FP8_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def encode_blocks(blocks: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes in the float8 dtype, scale float32 per block) of a (n_blocks, block_len) tensor."""
    dtype = FP8_DTYPES[fmt]
    fp8_max = torch.finfo(dtype).max
    blocks = blocks.float()
    amax = blocks.abs().amax(dim=1)
    scale = divisor(amax / fp8_max)
    # Clamp before the cast: a value that rounds up past the largest finite one would become nan
    # in E4M3 (it has no inf), and torch's cast does not saturate.
    codes = (blocks / scale.unsqueeze(1)).clamp(-fp8_max, fp8_max).to(dtype)
    return codes, scale


def decode_blocks(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale.unsqueeze(1)
