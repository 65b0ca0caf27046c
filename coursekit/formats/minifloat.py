"""Two tiny number formats, bit by bit: FP4 E2M1 (the element of MXFP4 and NVFP4) and E8M0 (MX's scale).

E2M1 packs a number into 4 bits: ``s e e m``, one sign bit, two exponent bits (bias 1) and one
mantissa bit. There is no inf and no nan; exponent 0 means "subnormal": no hidden 1.

    exponent e > 0 : value = (-1)^s * 2^(e - 1) * (1 + m / 2)
    exponent e = 0 : value = (-1)^s * m / 2

so the eight magnitudes are 0, 0.5, 1, 1.5, 2, 3, 4, 6 (OCP Microscaling Formats spec v1.0,
section 5.3.3). E8M0 is an 8-bit exponent with no sign and no mantissa: byte ``e`` stands for
2^(e - 127), and 255 is nan (same spec, section 5.4.1). It can only scale by powers of two, which
is what makes multiplying by it free in hardware: it only moves the exponent.

Everything here works on whole tensors at once, with integer bit operations a learner can read.
"""

from __future__ import annotations

import torch

from .. import checks

__all__ = ["E2M1_MAX", "E2M1_VALUES", "e2m1_decode", "e2m1_encode", "e8m0_decode", "e8m0_encode",
           "e8m0_from_amax", "TIES"]

E2M1_MAX = 6.0
#: The 16 code points in code order: 0..7 positive (0b0000..0b0111), 8..15 the same with the sign bit.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
#: How an exact tie between two neighbours is broken: "even" (IEEE / OCP: the even mantissa wins)
#: or "toward_zero" (the smaller magnitude wins: what ggml's reference does for MXFP4).
TIES = ("even", "toward_zero")


def _e2m1_fields_to_value(codes: torch.Tensor) -> torch.Tensor:
    c = codes.to(torch.int32)
    sign = (c >> 3) & 1
    exponent = (c >> 1) & 0b11
    mantissa = c & 1
    normal = torch.exp2((exponent - 1).float()) * (1 + mantissa.float() / 2)
    subnormal = mantissa.float() / 2
    magnitude = torch.where(exponent > 0, normal, subnormal)
    return torch.where(sign == 1, -magnitude, magnitude)


#: The value of each of the 16 codes, read from its bit fields once (index = code).
_E2M1_TABLE = _e2m1_fields_to_value(torch.arange(16))


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """float32 values of 4-bit E2M1 codes (integers 0..15).

    Each code's sign, exponent and mantissa fields are read once, for the 16 possible codes
    (``_e2m1_fields_to_value``); a tensor of codes then just looks its values up in that table.
    """
    checks.check_tensor(codes, "codes")
    if codes.is_floating_point() or (codes.numel() and (codes.min() < 0 or codes.max() > 15)):
        checks.fail("codes", "integer E2M1 codes from 0 to 15", "values outside that range or floats")
    return _E2M1_TABLE[codes.long()]


def e2m1_encode(y: torch.Tensor, ties: str = "even") -> torch.Tensor:
    """The nearest E2M1 code (uint8, 0..15) of each already-scaled value in ``y``.

    Values beyond +-6 saturate to +-6. Zero (and anything that rounds to zero) gets code 0, never
    the negative zero 8. ``ties``: one of TIES.
    """
    checks.check_tensor(y, "y", floating=True)
    checks.check_choice(ties, "ties", TIES)
    a = y.float().abs().clamp(max=E2M1_MAX)
    # The spacing of the grid around a: 0.5 below 2 (the subnormals 0, 0.5 and the binade [1, 2)),
    # 1 in [2, 4), 2 in [4, 6]: one mantissa bit, so each binade holds two steps.
    step = torch.where(a < 2, 0.5, torch.where(a < 4, 1.0, 2.0))
    steps = a / step                                          # exact: step is a power of two
    if ties == "even":
        steps = torch.round(steps)                            # torch rounds half to even
    else:
        steps = torch.ceil(steps - 0.5)                       # half goes down, to the smaller magnitude
    value = (steps * step).clamp(max=E2M1_MAX)                # one of 0, 0.5, 1, 1.5, 2, 3, 4, 6
    # The magnitude code (exponent and mantissa bits, 0..7) counts the grid steps from zero:
    # 2 * value below 2, value + 2 in [2, 4), value / 2 + 4 from 4 on.
    magnitude_code = torch.where(value < 2, 2 * value, torch.where(value < 4, value + 2, value / 2 + 4))
    magnitude_code = magnitude_code.to(torch.uint8)
    negative = (y < 0) & (magnitude_code > 0)
    return magnitude_code | (negative.to(torch.uint8) << 3)


def e8m0_decode(e: torch.Tensor) -> torch.Tensor:
    """float32 value 2^(e - 127) of E8M0 bytes (uint8); 255 is nan."""
    checks.check_tensor(e, "e")
    if e.dtype != torch.uint8:
        checks.fail("e", "a torch.uint8 tensor of E8M0 bytes", f"dtype {e.dtype}")
    value = torch.exp2(e.float() - 127)
    return torch.where(e == 255, torch.full_like(value, float("nan")), value)


def e8m0_encode(exponent: torch.Tensor) -> torch.Tensor:
    """E8M0 bytes of unbiased power-of-two exponents (2^exponent), clamped to the range -127..127."""
    checks.check_tensor(exponent, "exponent")
    return (exponent.to(torch.int32) + 127).clamp(0, 254).to(torch.uint8)


def e8m0_from_amax(amax: torch.Tensor, element_emax: int = 2) -> torch.Tensor:
    """The MX shared scale of blocks whose largest magnitude is ``amax``, as E8M0 bytes.

    OCP MX v1.0, section 6.3: shared exponent = floor(log2(amax)) - emax of the element format
    (2 for E2M1, whose largest value 6 = 1.5 * 2^2). The block's largest value then lands in
    [4, 8) after scaling: it keeps its leading bits, and values above 6 saturate. A block of
    zeros gets byte 0 (2^-127). floor(log2) is read exactly from the float's exponent (frexp).
    """
    checks.check_tensor(amax, "amax", floating=True)
    _, exp = torch.frexp(amax.float())          # amax = m * 2^exp with m in [0.5, 1)
    shared = exp - 1 - element_emax
    return torch.where(amax > 0, e8m0_encode(shared), torch.zeros_like(amax, dtype=torch.uint8))
