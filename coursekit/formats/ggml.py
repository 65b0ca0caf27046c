"""GGUF's simplest block formats, Q8_0, Q4_0 and Q4_1, and the bytes ggml stores for them (and MXFP4).

llama.cpp quantizes each row in blocks of 32 weights with one float16 scale ``d`` per block
(ggml's ``block_q8_0`` / ``block_q4_0``; GGUF docs, "quantization types"):

* Q8_0: d = absmax / 127, codes = round(x / d) in int8, rounding halves away from zero.
  34 bytes per 32 weights: 8.5 bits per weight.
* Q4_0: d = m / -8 where m is the block's value of largest magnitude *with its sign*, so that
  m itself maps exactly onto code -8 (the 4-bit range is -8..7, one step longer on the negative
  side). codes = x / d + 8 rounded (stored 0..15). 18 bytes per 32 weights: 4.5 bits per weight.
* Q4_1: asymmetric, the block's minimum m and d = (max - m) / 15, both stored in float16; codes =
  (x - m) / d rounded (0..15), and x ~ d * code + m. 20 bytes per 32 weights: 5 bits per weight.
  It is what SmolLM2's shipped GGUF file holds, and the zero-point idea of notebook 05 in ggml's
  form (a float offset instead of an integer zero point).

The code is computed with the float32 d (and m), and only then they are rounded to float16 for
storage, as ggml's reference does; dequantization uses the stored float16 values.

Q4_0's rounding has a tie that depends on the compiler. The code is trunc(x * id + 8.5) with
id = 1 / d: here, as in gguf-py (NumPy), the product is rounded to float32 before 8.5 is added.
ggml's C reference writes the same two operations, but a C compiler may contract them into one
fused multiply-add (GCC does by default where the target has FMA), which skips that rounding.
When x * id lies a hair below a half-integer the two differ by one code. Example: a block whose
signed max is 1.9256955 has id = -4.154343; x = 1.8053396 gives x * id = -7.50000006, which
float32 rounds to -7.5: code trunc(1.0) = 1 here and in gguf-py, but trunc(0.99999994) = 0 with
a fused multiply-add. Our bytes equal gguf-py's; a llama.cpp build may differ from both on such
ties, which are rare: none among 6.4 million random normal weights (200,000 blocks).
Q4_1 rounds as trunc((x - m) * id + 0.5), with the same contraction caveat.
Byte layout of a block: the scale first (2 bytes, little-endian float16; MXFP4: 1 E8M0 byte; Q4_1:
d, then m, 2 bytes each), then the codes; for 4-bit codes element j sits in the low nibble of byte j
and element j + 16 in its high nibble.
"""

from __future__ import annotations

import numpy as np
import torch

from .scales import reciprocal

__all__ = ["encode_q8_0", "decode_q8_0", "encode_q4_0", "decode_q4_0", "encode_q4_1", "decode_q4_1", "block_bytes",
           "from_block_bytes"]


def _round_half_away(y: torch.Tensor) -> torch.Tensor:
    # floor(|y|) + 1 if the fraction is at least one half: exact in float32 (adding 0.5 is not).
    a = y.abs()
    whole = torch.floor(a)
    return torch.sign(y) * (whole + torch.floor(2 * (a - whole)))


def encode_q8_0(blocks: torch.Tensor):
    blocks = blocks.float()
    d = blocks.abs().amax(dim=1) / 127
    codes = _round_half_away(blocks * reciprocal(d).unsqueeze(1)).to(torch.int8)
    return codes, d.to(torch.float16)


def decode_q8_0(codes, d):
    return codes.float() * d.float().unsqueeze(1)


def encode_q4_0(blocks: torch.Tensor):
    blocks = blocks.float()
    where = blocks.abs().argmax(dim=1, keepdim=True)
    signed_max = blocks.gather(1, where).squeeze(1)
    d = signed_max / -8
    codes = torch.trunc(blocks * reciprocal(d).unsqueeze(1) + 8.5).clamp(0, 15).to(torch.uint8)
    return codes, d.to(torch.float16)


def decode_q4_0(codes, d):
    return (codes.float() - 8) * d.float().unsqueeze(1)


def encode_q4_1(blocks: torch.Tensor):
    """Codes (uint8, 0..15) and the scales as stored: (n_blocks, 2) float16, d then m."""
    blocks = blocks.float()
    low, high = blocks.amin(dim=1), blocks.amax(dim=1)
    d = (high - low) / 15
    codes = torch.trunc((blocks - low.unsqueeze(1)) * reciprocal(d).unsqueeze(1) + 0.5).clamp(0, 15)
    return codes.to(torch.uint8), torch.stack([d, low], dim=1).to(torch.float16)


def decode_q4_1(codes, dm):
    dm = dm.float()
    return codes.float() * dm[:, :1] + dm[:, 1:]


def _nibbles(codes: torch.Tensor) -> torch.Tensor:
    half = codes.shape[1] // 2
    return codes[:, :half] | (codes[:, half:] << 4)


def block_bytes(fmt: str, codes: torch.Tensor, scales: torch.Tensor) -> np.ndarray:
    """ggml's bytes for (n_blocks, 32) codes and their scales: a uint8 array (n_blocks, type_size)."""
    if fmt == "q8_0":
        parts = [scales.view(torch.uint8).reshape(-1, 2), codes.view(torch.uint8)]
    elif fmt in ("q4_0", "q4_1"):
        parts = [scales.contiguous().view(torch.uint8).reshape(codes.shape[0], -1), _nibbles(codes)]
    elif fmt == "mxfp4":
        parts = [scales.reshape(-1, 1), _nibbles(codes)]
    else:
        raise ValueError(f"fmt: expected 'q8_0', 'q4_0', 'q4_1' or 'mxfp4' (formats GGUF stores), got {fmt!r}")
    return torch.cat(parts, dim=1).numpy()


def from_block_bytes(fmt: str, raw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of ``block_bytes``: (codes (n_blocks, 32), scales) from ggml's bytes."""
    raw = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.uint8)).reshape(-1, _TYPE_SIZE[fmt])
    if fmt == "q8_0":
        return raw[:, 2:].contiguous().view(torch.int8), raw[:, :2].contiguous().view(torch.float16).reshape(-1)
    head = {"q4_0": 2, "q4_1": 4, "mxfp4": 1}[fmt]
    packed = raw[:, head:]
    codes = torch.cat([packed & 0x0F, packed >> 4], dim=1)
    if fmt == "mxfp4":
        return codes, raw[:, 0].clone()
    scales = raw[:, :head].contiguous().view(torch.float16)
    return codes, scales.reshape(-1) if fmt == "q4_0" else scales.reshape(-1, 2)


_TYPE_SIZE = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "mxfp4": 17}
