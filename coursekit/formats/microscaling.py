"""FP4 E2M1 with block scales: a plain absmax-scaled FP4, OCP MXFP4 and NVIDIA NVFP4.

All three store E2M1 codes (``minifloat``); they differ only in how each block is scaled:

* ``fp4_e2m1``: blocks of 64, one float32 absmax per block, scale = absmax / 6 (bitsandbytes'
  FP4 and NF4 share this layout, so the two differ only in where their 16 levels sit).
* ``mxfp4`` (OCP Microscaling Formats v1.0): blocks of 32, one E8M0 scale per block, a power of
  two: 2^(floor(log2(amax)) - 2). Cheap (8 bits per 32 weights) but coarse: the block's largest
  value lands anywhere in [4, 8) and is clipped to 6 above 6. log2 is taken as ggml takes it, in
  float32 (``ggml_e8m0``): just below a power of two it rounds up to the integer, so such a block
  gets the next exponent (amax = 7.9999995: byte 128, where the exact floor, ``e8m0_from_amax``,
  gives 127), and its largest value lands on 4 instead of being clipped to 6.
* ``nvfp4`` (NVIDIA Blackwell, "Introducing NVFP4", NVIDIA technical blog 2025): blocks of 16,
  one FP8 E4M3 scale per block, plus one float32 scale for the whole tensor so that the block
  scales use E4M3's range: tensor scale = amax(tensor) / (6 * 448), block scale =
  e4m3(amax(block) / 6 / tensor scale). Finer scales, twice as many of them.

Elements round to nearest with ties to even (the spec's rounding), except in ``mxfp4``, where ties
go toward zero as in ggml's reference. With its float32 log2 too, our MXFP4 blocks equal those of
``gguf.quants`` (the NumPy port of ggml's reference) bit for bit, tested on random and real weights
and at the powers of two. Two limits: blocks whose amax is below 2^-125 (gguf-py's byte wraps
around there; ours clamps to 0), and a CPU whose float32 log2 is not correctly rounded (we round
a float64 log2 to float32: the correctly rounded value).
"""

from __future__ import annotations

import torch

from .scales import divisor
from .minifloat import E2M1_MAX, e2m1_decode, e2m1_encode, e8m0_decode, e8m0_encode

__all__ = ["encode_fp4", "decode_fp4", "encode_mxfp4", "decode_mxfp4", "encode_nvfp4", "decode_nvfp4",
           "ggml_e8m0"]

E2M1_EMAX = 2           # E2M1's largest value 6 = 1.5 * 2^2: the shared exponent is floor(log2(amax)) - 2
_E4M3_MAX = 448.0


def encode_fp4(blocks: torch.Tensor):
    blocks = blocks.float()
    scale = blocks.abs().amax(dim=1) / E2M1_MAX
    return e2m1_encode(blocks / divisor(scale).unsqueeze(1)), scale


def decode_fp4(codes, scale):
    return e2m1_decode(codes) * scale.unsqueeze(1)


def ggml_e8m0(amax: torch.Tensor) -> torch.Tensor:
    """MXFP4's E8M0 byte as ggml computes it: floor(log2f(amax)) - 2 + 127, log2 in float32; 0 for amax 0.

    The float32 log2 of an amax a few units in the last place below 2^k is k itself (rounded),
    whereas the exact floor (``e8m0_from_amax``, from the float's own exponent) is k - 1.
    """
    log2 = torch.log2(amax.double().clamp(min=torch.finfo(torch.float32).tiny)).float()
    return torch.where(amax > 0, e8m0_encode(torch.floor(log2) - E2M1_EMAX),
                       torch.zeros_like(amax, dtype=torch.uint8))


def encode_mxfp4(blocks: torch.Tensor):
    blocks = blocks.float()
    e = ggml_e8m0(blocks.abs().amax(dim=1))
    return e2m1_encode(blocks / e8m0_decode(e).unsqueeze(1), ties="toward_zero"), e


def decode_mxfp4(codes, e):
    return e2m1_decode(codes) * e8m0_decode(e).unsqueeze(1)


def encode_nvfp4(blocks: torch.Tensor):
    blocks = blocks.float()
    tensor_amax = blocks.abs().max()
    tensor_scale = tensor_amax / (E2M1_MAX * _E4M3_MAX) if tensor_amax > 0 else torch.tensor(1.0)
    block_scale = (blocks.abs().amax(dim=1) / E2M1_MAX / tensor_scale).clamp(max=_E4M3_MAX)
    block_scale = block_scale.to(torch.float8_e4m3fn)          # the stored, rounded scale
    effective = divisor(block_scale.float() * tensor_scale)
    return e2m1_encode(blocks / effective.unsqueeze(1)), block_scale, tensor_scale.reshape(1).float()


def decode_nvfp4(codes, block_scale, tensor_scale):
    return e2m1_decode(codes) * (block_scale.float() * tensor_scale).unsqueeze(1)
