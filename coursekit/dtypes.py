"""The bits behind a number: integers in two's complement and floats as sign, exponent, mantissa.

Lesson 1 of the course asks "what does a dtype actually store?". Every function here answers that
question with the real bytes torch keeps in memory: floats are cast to the dtype and their bits are
read back with ``tensor.view(<integer dtype>)``, so what a learner sees is what torch does (rounding,
subnormals, inf and nan included), not a re-implementation of IEEE 754 that might disagree with it.

Bit strings are written most significant bit first, the way they are drawn on a whiteboard:
``int_to_bits(-43) == '11010101'``; for floats the sign bit comes first, then exponent, then mantissa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import checks

__all__ = [
    "int_range", "int_to_bits", "bits_to_int", "decode_int", "IntDecoding",
    "FLOAT_DTYPES", "INT_DTYPES", "as_dtype", "float_layout", "float_to_bits", "bits_to_float",
    "decode_float", "FloatBits", "FloatDecoding", "bit_roles", "value_to_bits", "decode",
    "DtypeInfo", "dtype_table", "format_table",
]

# Float dtypes the course can take apart. float8 types only exist in recent torch builds.
FLOAT_DTYPES: tuple[torch.dtype, ...] = tuple(
    d for d in (
        torch.float32, torch.float16, torch.bfloat16,
        getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None),
    ) if d is not None
)
INT_DTYPES: tuple[torch.dtype, ...] = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)

# Short names a learner types, mapped to torch dtypes.
_ALIASES = {
    "fp32": torch.float32, "float": torch.float32, "fp16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "fp8": getattr(torch, "float8_e4m3fn", None),
}


def as_dtype(dtype) -> torch.dtype:
    """Accept a torch.dtype or a name ("float16", "fp16", "bf16", "int8") and return the torch.dtype.

    Notebooks read better with short strings; the library works with real dtypes.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        resolved = _ALIASES.get(name) or getattr(torch, name, None)
        if isinstance(resolved, torch.dtype):
            return resolved
        checks.fail("dtype", "a dtype name such as 'float16', 'bf16', 'int8'", repr(dtype))
    checks.fail("dtype", "a torch.dtype or a name like 'float16'", type(dtype).__name__, TypeError)


def _short_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_bitstring(bitstring, expected_len: int | None = None) -> str:
    checks.check_instance(bitstring, "bitstring", str, "a str of '0'/'1'")
    if not bitstring or set(bitstring) - {"0", "1"}:
        checks.fail("bitstring", "only the characters '0' and '1'", repr(bitstring))
    if expected_len is not None and len(bitstring) != expected_len:
        checks.fail("bitstring", f"{expected_len} bits", f"{len(bitstring)} ({bitstring!r})")
    return bitstring


# ---------------------------------------------------------------------------------------------
# Integers: two's complement
# ---------------------------------------------------------------------------------------------

def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """Smallest and largest integer that fits in ``bits`` bits.

    The formula is the lesson: signed two's complement spends one bit on the sign, so it covers
    -2^(b-1) .. 2^(b-1)-1 (one more negative number than positive); unsigned covers 0 .. 2^b-1.
    bits: an int >= 1.
    """
    bits = checks.check_int(bits, "bits", low=1)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def int_to_bits(value: int, bits: int = 8, signed: bool = True) -> str:
    """Two's complement bit string of ``value`` (e.g. ``int_to_bits(-43) == '11010101'``).

    A negative number is stored as ``2^bits + value``: that is why adding the bit patterns of
    -43 and 43 overflows to all zeros, and why the hardware needs no separate subtraction circuit.
    bits: an int >= 1; value: an int that fits, from int_range(bits, signed)[0] to [1].
    """
    low, high = int_range(bits, signed)
    value = checks.check_int(value, "value", low, high)
    return format(value % (2 ** bits), f"0{bits}b")


def bits_to_int(bitstring: str, signed: bool = True) -> int:
    """Read a bit string as an integer: ``'11010101'`` is -43 signed, 213 unsigned.

    In two's complement the leading bit is worth -2^(b-1) instead of +2^(b-1); that single sign
    flip is the whole difference between the signed and unsigned readings.
    """
    bitstring = _check_bitstring(bitstring)
    unsigned = int(bitstring, 2)
    if signed and bitstring[0] == "1":
        return unsigned - 2 ** len(bitstring)
    return unsigned


@dataclass(frozen=True)
class IntDecoding:
    """An integer bit string explained: its value and the place-value sum that produces it."""

    bitstring: str
    signed: bool
    value: int
    formula: str


def decode_int(bitstring: str, signed: bool = True) -> IntDecoding:
    """Explain an integer bit string as a sum of place values, e.g. ``-128 + 64 + 16 + 4 + 1``.

    Seeing the sign bit contribute ``-128`` is what makes two's complement click for a learner.
    """
    bitstring = _check_bitstring(bitstring)
    n = len(bitstring)
    terms = []
    for i, bit in enumerate(bitstring):
        if bit == "1":
            weight = 2 ** (n - 1 - i)
            terms.append(-weight if (signed and i == 0) else weight)
    value = bits_to_int(bitstring, signed)
    formula = " + ".join(str(t) for t in terms).replace("+ -", "- ") if terms else "0"
    return IntDecoding(bitstring=bitstring, signed=signed, value=value, formula=formula)


# ---------------------------------------------------------------------------------------------
# Floats: sign, exponent, mantissa
# ---------------------------------------------------------------------------------------------

def _check_float_dtype(dtype) -> torch.dtype:
    dtype = as_dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        names = ", ".join(_short_name(d) for d in FLOAT_DTYPES)
        checks.fail("dtype", f"one of {names}", _short_name(dtype))
    return dtype


def float_layout(dtype) -> tuple[int, int, int]:
    """``(sign_bits, exponent_bits, mantissa_bits)`` of a float dtype, e.g. float16 -> (1, 5, 10).

    Derived from ``torch.finfo`` rather than typed in: eps = 2^-mantissa_bits, and what is left of
    the bits after sign and mantissa is the exponent.
    """
    dtype = _check_float_dtype(dtype)
    info = torch.finfo(dtype)
    mantissa_bits = round(-math.log2(info.eps))
    return 1, info.bits - 1 - mantissa_bits, mantissa_bits


def _container(dtype: torch.dtype) -> torch.dtype:
    """The integer dtype with the same width, used to reinterpret a float's bytes."""
    return {32: torch.int32, 16: torch.int16, 8: torch.uint8}[torch.finfo(dtype).bits]


@dataclass(frozen=True)
class FloatBits:
    """The three bit fields of a float as stored in ``dtype``, and the value they encode."""

    sign: str
    exponent: str
    mantissa: str
    value: float
    dtype: torch.dtype

    @property
    def bits(self) -> str:
        """All bits, sign first: what ``bits_to_float`` takes back."""
        return self.sign + self.exponent + self.mantissa

    def __str__(self) -> str:
        return f"{self.sign} {self.exponent} {self.mantissa}"


def float_to_bits(value, dtype=torch.float32) -> FloatBits:
    """Cast ``value`` to ``dtype`` and show the bits torch stores, split into sign/exponent/mantissa.

    ``.value`` is the number actually stored, so ``float_to_bits(0.1, torch.float16).value`` shows
    the rounding error a learner otherwise never sees.
    """
    dtype = _check_float_dtype(dtype)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            checks.fail("value", "a single number", f"a tensor of shape {tuple(value.shape)}")
        value = value.item()
    checks.check_instance(value, "value", (int, float), "a number")
    stored = torch.tensor(float(value), dtype=torch.float64).to(dtype)
    width = torch.finfo(dtype).bits
    pattern = int(stored.reshape(1).view(_container(dtype)).item()) % (2 ** width)
    bits = format(pattern, f"0{width}b")
    _, e, _ = float_layout(dtype)
    return FloatBits(sign=bits[0], exponent=bits[1:1 + e], mantissa=bits[1 + e:],
                     value=stored.to(torch.float32).item(), dtype=dtype)


def bits_to_float(bitstring: str, dtype=torch.float32) -> float:
    """The value that a bit pattern encodes in ``dtype``: the inverse of ``float_to_bits``.

    The bits are written into an integer tensor and viewed as ``dtype``, so torch decides what
    they mean; this is the ground truth the explanations in ``decode_float`` are checked against.
    """
    dtype = _check_float_dtype(dtype)
    width = torch.finfo(dtype).bits
    bitstring = _check_bitstring(bitstring, expected_len=width)
    container = _container(dtype)
    pattern = bits_to_int(bitstring, signed=container.is_signed)
    raw = torch.tensor([pattern], dtype=container)
    return raw.view(dtype).to(torch.float32).item()


@dataclass(frozen=True)
class FloatDecoding:
    """A float bit pattern explained the way the lesson writes it: (-1)^s x 2^e x significand.

    ``kind`` is one of "normal", "subnormal", "zero", "inf", "nan". For normal numbers the
    significand is 1 + fraction (the hidden leading 1); for subnormals and zero it is 0 + fraction
    and the exponent is pinned at its minimum, which is how floats fill the gap around zero.
    """

    bitstring: str
    dtype: torch.dtype
    sign: int
    exponent_bits: str
    mantissa_bits: str
    bias: int
    exponent: int | None        # unbiased exponent; None for inf / nan
    fraction: float             # the mantissa bits read as 0.b1b2b3... in binary
    significand: float          # 1 + fraction (normal) or fraction (subnormal / zero)
    kind: str
    value: float
    formula: str

    @property
    def is_subnormal(self) -> bool:
        return self.kind == "subnormal"


def _significand_decimals(mantissa_bits: int) -> int:
    """Decimals to print a significand with: exact for short mantissas (m binary digits after the
    point need at most m decimals), otherwise just enough that neighbours 2^-m apart differ."""
    if mantissa_bits <= 7:
        return mantissa_bits
    return math.ceil(mantissa_bits * math.log10(2)) + 1


def _fixed(x: float, decimals: int) -> str:
    """``x`` with at most ``decimals`` decimals, trailing zeros dropped (but keep "1.0")."""
    text = f"{x:.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def decode_float(bitstring: str, dtype=torch.float32) -> FloatDecoding:
    """Explain a float bit pattern: sign, unbiased exponent, mantissa fraction and the formula.

    The value comes from torch (``bits_to_float``); the fields are computed from the bits with the
    textbook rules, and the formula string is what the bit explorer shows, e.g.
    ``"(-1)^0 x 2^(-2) x 1.33301"`` for 1/3 in float16.
    """
    dtype = _check_float_dtype(dtype)
    _, e, m = float_layout(dtype)
    bitstring = _check_bitstring(bitstring, expected_len=1 + e + m)
    value = bits_to_float(bitstring, dtype)
    sign = int(bitstring[0])
    exp_field, mant_field = bitstring[1:1 + e], bitstring[1 + e:]
    bias = 2 ** (e - 1) - 1
    fraction = int(mant_field, 2) / 2 ** m
    raw_exponent = int(exp_field, 2)
    decimals = _significand_decimals(m)

    if math.isnan(value):
        kind, exponent, significand = "nan", None, fraction
        formula = "NaN (not a number)"
    elif math.isinf(value):
        kind, exponent, significand = "inf", None, fraction
        formula = f"(-1)^{sign} x infinity"
    elif raw_exponent == 0:
        kind = "zero" if fraction == 0 else "subnormal"
        exponent, significand = 1 - bias, fraction
        formula = f"(-1)^{sign} x 2^({exponent}) x {_fixed(significand, decimals)}"
    else:
        kind, exponent, significand = "normal", raw_exponent - bias, 1 + fraction
        formula = f"(-1)^{sign} x 2^({exponent}) x {_fixed(significand, decimals)}"
    return FloatDecoding(bitstring=bitstring, dtype=dtype, sign=sign, exponent_bits=exp_field,
                         mantissa_bits=mant_field, bias=bias, exponent=exponent, fraction=fraction,
                         significand=significand, kind=kind, value=value, formula=formula)


# ---------------------------------------------------------------------------------------------
# One entry point for "any dtype": what the bit explorer calls
# ---------------------------------------------------------------------------------------------

def _check_int_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in INT_DTYPES:
        names = ", ".join(_short_name(d) for d in INT_DTYPES + FLOAT_DTYPES)
        checks.fail("dtype", f"one of {names}", _short_name(dtype))
    return dtype


def bit_roles(dtype) -> list[str]:
    """The role of each bit, most significant first: "sign", "exponent", "mantissa" or "value".

    Used to colour the bit explorer's buttons; unsigned integers have no sign bit.
    """
    dtype = as_dtype(dtype)
    if dtype.is_floating_point:
        s, e, m = float_layout(dtype)
        return ["sign"] * s + ["exponent"] * e + ["mantissa"] * m
    bits = torch.iinfo(_check_int_dtype(dtype)).bits
    return (["sign"] if dtype.is_signed else []) + ["value"] * (bits - dtype.is_signed)


def value_to_bits(value, dtype) -> str:
    """Bit string of ``value`` stored in ``dtype`` (float: rounded by torch; int: must fit)."""
    dtype = as_dtype(dtype)
    if dtype.is_floating_point:
        return float_to_bits(value, dtype).bits
    info = torch.iinfo(_check_int_dtype(dtype))
    return int_to_bits(value, info.bits, signed=dtype.is_signed)


def decode(bitstring: str, dtype) -> IntDecoding | FloatDecoding:
    """Explain a bit string in any supported dtype; both results carry ``.value`` and ``.formula``."""
    dtype = as_dtype(dtype)
    if dtype.is_floating_point:
        return decode_float(bitstring, dtype)
    bits = torch.iinfo(_check_int_dtype(dtype)).bits
    return decode_int(_check_bitstring(bitstring, expected_len=bits), signed=dtype.is_signed)


# ---------------------------------------------------------------------------------------------
# The comparison table
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DtypeInfo:
    """One row of the dtype comparison table. Float-only fields are None for integer dtypes."""

    name: str
    bits: int
    exponent_bits: int | None
    mantissa_bits: int | None
    min: float
    max: float
    tiny: float | None          # smallest positive normal number
    eps: float | None           # gap between 1 and the next representable number


_TABLE_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32) + FLOAT_DTYPES


def dtype_table(dtypes=None) -> list[DtypeInfo]:
    """Range and precision of each dtype, read from ``torch.finfo`` / ``torch.iinfo``.

    Defaults to the integer and float types the course uses (float8 only where torch has it).
    """
    rows = []
    for dtype in (_TABLE_DTYPES if dtypes is None else dtypes):
        dtype = as_dtype(dtype)
        if dtype.is_floating_point:
            info = torch.finfo(dtype)
            _, e, m = float_layout(dtype)
            rows.append(DtypeInfo(_short_name(dtype), info.bits, e, m, info.min, info.max,
                                  info.tiny, info.eps))
        else:
            info = torch.iinfo(_check_int_dtype(dtype))
            rows.append(DtypeInfo(_short_name(dtype), info.bits, None, None, info.min, info.max,
                                  None, None))
    return rows


def format_table(rows: list[DtypeInfo]) -> str:
    """An aligned plain-text table of ``dtype_table`` rows, four significant digits per number.

    Plain text with fixed formatting so that notebook outputs compare exactly between runs.
    """
    def fmt(x):
        return "-" if x is None else f"{x:.4g}"

    header = ("dtype", "bits", "exp", "mant", "min", "max", "tiny", "eps")
    lines = [header] + [
        (r.name, str(r.bits), fmt(r.exponent_bits), fmt(r.mantissa_bits), fmt(r.min), fmt(r.max),
         fmt(r.tiny), fmt(r.eps)) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
