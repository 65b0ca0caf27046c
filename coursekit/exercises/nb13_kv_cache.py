"""Exercises of notebook 13 · The KV cache: count its bytes per token (grouped-query attention
included), read from measured ranges which axis keys are quantized along, and dequantize a block of
keys quantized per channel.
"""

from __future__ import annotations

import torch

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 13.kv_bytes_per_token
def _per_token_cases():
    return [
        (30, 9, 3, 64, 16),        # SmolLM2-135M in fp16: grouped-query attention, 3 KV heads for 9
        (32, 32, 32, 128, 16),     # Llama-2-7B: every query head has its own KV head
        (32, 32, 8, 128, 16),      # Llama-3-8B's shape: 8 KV heads
        (4, 4, 4, 64, 32),         # the course LM, fp32
        (30, 9, 3, 64, 4),         # SmolLM2 at 4 bits: half a byte per element
        (32, 32, 8, 128, 2),       # 2 bits
        (80, 64, 8, 128, 8),       # a 70B shape in 8 bits
        (1, 8, 1, 64, 16),         # multi-query attention: one KV head
    ]


@exercise(title="KV-cache bytes per token", cases=_per_token_cases, atol=0.0, rtol=1e-12,
          forbid=("coursekit.kvcache.kv_bytes",),
          hint=("every layer stores two tensors for each token, and only the key/value heads count: with "
                "grouped-query attention several query heads share one. Check: SmolLM2 in fp16 stores "
                "23,040 bytes per token. Return a float.",
                "multiply 2 (keys and values), the layers, the KV heads (not the query heads) and the head "
                "dim; each element takes bits / 8 bytes.",
                "return 2 * layers * kv_heads * head_dim * bits / 8"))
def kv_bytes_per_token(layers, heads, kv_heads, head_dim, bits):
    """Bytes the KV cache grows by for each token of context (batch 1), elements of `bits` bits."""
    return 2 * layers * kv_heads * head_dim * bits / 8


# --------------------------------------------------------------------------- 13.key_axis
@exercise(title="which axis for the keys?", choices=("a", "b", "c", "d"),
          hint=("look at where the tall bars of the key panels are: at the same channels in every token, or "
                "at different channels for different tokens? Then ask which scale a tall bar would stretch.",
                "a scale per token covers all 64 channels of that token, the large ones included; a scale "
                "per channel covers one channel over many tokens."))
def key_axis():
    """The statement that says along which axis to quantize keys, and why."""
    return "b"


# --------------------------------------------------------------------------- 13.dequantize_keys
def _dequantize_cases():
    g = seeded(1313)

    def case(heads, tokens, dim, bits=4):
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        codes = torch.randint(lo, hi + 1, (heads, tokens, dim), generator=g, dtype=torch.int8)
        scale = torch.rand(heads, dim, generator=g) * 0.5 + 0.01
        zero_point = torch.randint(lo, hi + 1, (heads, dim), generator=g, dtype=torch.int8)
        return codes, scale, zero_point

    wide = case(2, 32, 8, bits=8)
    wide[0][0, 0, 0], wide[2][0, 0] = 127, -128      # 127 - (-128) overflows int8
    return [case(3, 32, 64), case(3, 3, 64), case(1, 1, 4), case(2, 5, 5), wide, case(4, 32, 16, bits=2)]


@exercise(title="dequantize a block of keys quantized per channel",
          forbid=("coursekit.quant.linear_dequantize", "coursekit.quant.QTensor.dequantize"), cases=_dequantize_cases,
          hint=("the codes have one row per token, the scale and zero point one entry per channel of each "
                "head: line them up along the right axis before any arithmetic (a block with as many tokens "
                "as heads broadcasts silently and wrongly), and mind int8 overflow. Return float32.",
                "give scale and zero_point a token axis of size 1 in the middle, e.g. scale[:, None, :], "
                "then apply r = s (q - z) with the codes turned into floats first.",
                "return scale[:, None, :] * (codes.float() - zero_point[:, None, :].float())"))
def dequantize_keys(codes, scale, zero_point):
    """Keys (heads, tokens, head_dim) from int8 codes of that shape and per-channel (heads, head_dim)
    scales and zero points, shared by every token of the block: r = s (q - z)."""
    return scale[:, None, :] * (codes.float() - zero_point[:, None, :].float())
