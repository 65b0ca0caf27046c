"""Exercises of notebook 12 · Number formats: read an E2M1 code, find an MX block's shared
exponent, and count NF4's bits per weight with its scales (and with QLoRA's double quantization).
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 12.decode_e2m1
def _e2m1_cases():
    return [(c,) for c in (5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)]


@exercise(title="decode an FP4 E2M1 code", cases=_e2m1_cases, atol=0.0, rtol=0.0,
          hint=("split the 4 bits into sign (bit 3), exponent (bits 2-1) and mantissa (bit 0). The exponent "
                "bias is 1, and an exponent field of 0 is the subnormal case: no hidden 1 there. Check: "
                "0b0101 is 3.0 and 0b0001 is 0.5; return a float.",
                "sign = (code >> 3) & 1, e = (code >> 1) & 3, m = code & 1. Normal (e > 0): 2**(e-1) * "
                "(1 + m/2); subnormal (e == 0): m / 2. Flip the sign if the sign bit is set.",
                "return (-1.0 if code & 8 else 1.0) * (2.0 ** (e - 1) * (1 + m / 2) if e else m / 2) "
                "with e = (code >> 1) & 3 and m = code & 1."))
def decode_e2m1(code):
    """The value of a 4-bit E2M1 code (an int from 0 to 15)."""
    sign = -1.0 if (code >> 3) & 1 else 1.0
    exponent = (code >> 1) & 0b11
    mantissa = code & 1
    if exponent == 0:
        return sign * mantissa / 2
    return sign * 2.0 ** (exponent - 1) * (1 + mantissa / 2)


# --------------------------------------------------------------------------- 12.mx_shared_exponent
def _mx_cases():
    g = seeded(120)
    spiky = torch.randn(32, generator=g) * 0.01
    spiky[7] = -0.9                                   # the largest magnitude is negative
    exact = torch.zeros(32)
    exact[0] = 8.0                                    # a power of two: floor(log2 8) = 3
    six = torch.linspace(-6.0, 1.0, 32)               # 6 = 1.5 * 2^2: the scale is 2^0
    return [(torch.randn(32, generator=g) * 0.02,), (spiky,), (exact,), (six,), (torch.zeros(32),),
            (torch.randn(32, generator=g) * 300.0,), (torch.full((32,), 1e-6),),
            (torch.tensor([0.5] * 31 + [-0.25]),)]


@exercise(title="an MX block's shared exponent (E8M0 byte)", cases=_mx_cases, atol=0.0, rtol=0.0,
          hint=("the scale is a power of two chosen so that the block's largest magnitude lands just where "
                "E2M1's own largest exponent is (6 = 1.5 * 2^2). Mind the sign of that largest value, the "
                "bias of E8M0 (127), and the block of zeros (byte 0). Return a Python int.",
                "amax = block.abs().max(); the unbiased exponent is floor(log2(amax)) - 2; the stored byte "
                "adds the bias 127. A block of all zeros gets 0.",
                "return 0 if amax == 0 else math.floor(math.log2(amax)) - 2 + 127, with amax = "
                "block.abs().max().item()."))
def mx_shared_exponent(block):
    """The E8M0 byte (an int, bias 127) of the shared scale of a 32-value MXFP4 block."""
    amax = block.abs().max().item()
    if amax == 0:
        return 0
    return math.floor(math.log2(amax)) - 2 + 127


# --------------------------------------------------------------------------- 12.nf4_bits_per_weight
def _nf4_bits_cases():
    return [(64, False), (64, True), (128, False), (32, False), (32, True), (256, True), (1024, False)]


@exercise(title="NF4's bits per weight, scales included", cases=_nf4_bits_cases,
          hint=("count every stored bit of one block, then share it out over the block's weights. "
                "Without double quantization each block stores one float32 absmax; with it the absmax "
                "shrinks to 8 bits, and each group of 256 such absmaxes stores one float32 scale of "
                "its own. Check: 64 and no double quantization gives 4.5.",
                "without: 4 + 32 / block_size. With: 4 + 8 / block_size + 32 / (block_size * 256); "
                "64 with double quantization gives about 4.127, the paper's number."))
def nf4_bits_per_weight(block_size, double_quant):
    """Bits per weight of NF4 with blocks of `block_size` (float32 absmax, or 8-bit absmax with
    one float32 scale per 256 blocks if `double_quant`)."""
    if double_quant:
        return 4 + 8 / block_size + 32 / (block_size * 256)
    return 4 + 32 / block_size
