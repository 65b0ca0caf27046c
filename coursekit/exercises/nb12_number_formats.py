"""Exercises of notebook 12 · Number formats: read an E2M1 code, find an MX block's shared
exponent, and count NF4's bits per weight with its scales (and with QLoRA's double quantization).
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 12.decode_e2m1
def _e2m1_cases():
    """All 16 E2M1 codes (the notebook prints them) and codes of FP6's E2M3 and E3M2 (OCP MX v1.0,
    §5.3.2): the same rule with other field widths, so a lookup table of the 16 values fails."""
    g = seeded(12)
    fp4 = [(c,) for c in (5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)]
    fp6 = [(c, e, m) for e, m in ((2, 3), (3, 2))
           for c in [0, 1, 31, 32, 63] + torch.randint(0, 64, (7,), generator=g).tolist()]
    return fp4 + fp6


@exercise(title="decode an FP4 E2M1 code (and its FP6 siblings)",
          forbid=("coursekit.formats.minifloat.e2m1_decode", "coursekit.formats.microscaling.decode_fp4",
                  "coursekit.formats.decode", "coursekit.dtypes.bits_to_float"),
          cases=_e2m1_cases, atol=0.0, rtol=0.0,
          hint=("read the fields from the top: the sign bit, then the exponent field, then the mantissa "
                "field. The bias depends on the exponent width (1 for E2M1, 3 for E3M2), and an exponent "
                "field of 0 is the subnormal case: no hidden 1 there. Check: in E2M1 0b0101 is 3.0 and "
                "0b0001 is 0.5; in E3M2 the largest code, 31, is 28.0. Return a float.",
                "bias = 2**(exponent_bits-1) - 1; sign bit = (code >> (exponent_bits + mantissa_bits)) & 1; "
                "e = (code >> mantissa_bits) masked to exponent_bits bits; f = (the low mantissa_bits "
                "bits) / 2**mantissa_bits. Normal (e > 0): 2**(e - bias) * (1 + f); subnormal (e == 0): "
                "2**(1 - bias) * f. Flip the sign if the sign bit is set.",
                "e = (code >> mantissa_bits) & (2**exponent_bits - 1), m = code & (2**mantissa_bits - 1), "
                "f = m / 2**mantissa_bits; value = 2.0 ** (e - bias) * (1 + f) if e else 2.0 ** (1 - bias) "
                "* f, negated when the sign bit is set."))
def decode_e2m1(code, exponent_bits=2, mantissa_bits=1):
    """The value of a minifloat code (an int): one sign bit, `exponent_bits`, `mantissa_bits`, no inf
    or nan. The defaults are E2M1 (codes 0 to 15); (3, 2) is FP6 E3M2, (2, 3) FP6 E2M3."""
    bias = 2 ** (exponent_bits - 1) - 1
    sign = -1.0 if (code >> (exponent_bits + mantissa_bits)) & 1 else 1.0
    exponent = (code >> mantissa_bits) & (2 ** exponent_bits - 1)
    fraction = (code & (2 ** mantissa_bits - 1)) / 2 ** mantissa_bits
    if exponent == 0:                     # subnormal: no hidden 1
        return sign * 2.0 ** (1 - bias) * fraction
    return sign * 2.0 ** (exponent - bias) * (1 + fraction)


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


@exercise(title="an MX block's shared exponent (E8M0 byte)",
          forbid=("coursekit.formats.minifloat.e8m0_from_amax", "coursekit.formats.microscaling.ggml_e8m0", "coursekit.formats.microscaling.encode_mxfp4", "coursekit.formats.encode"), cases=_mx_cases, atol=0.0, rtol=0.0,
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


@exercise(title="NF4's bits per weight, scales included",
          forbid=("coursekit.formats.bits_per_weight", "coursekit.formats.nbytes"), cases=_nf4_bits_cases,
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
