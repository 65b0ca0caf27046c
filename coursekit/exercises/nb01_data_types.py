"""Exercises of notebook 01 (data types): integer ranges, two's complement, memory, float16 rounding.

Integer answers are compared exactly (atol = rtol = 0): an off-by-one range must fail even for
64-bit integers, where a relative tolerance would hide it.
"""

from __future__ import annotations

import torch

from .spec import exercise


def _range_cases():
    return [(8,), (1,), (2,), (4,), (16,), (32,), (64,)]


@exercise(title="range of an n-bit signed integer", cases=_range_cases, atol=0.0, rtol=0.0,
          hint="one bit pays for the sign: the range is -2^(n-1) .. 2^(n-1) - 1; return a tuple (min, max).")
def signed_range(bits):
    """Smallest and largest value of a signed two's complement integer with `bits` bits."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _bits_cases():
    return [(2, 8), (6, 8), (33, 8), (100, 8), (-43, 8), (0, 8), (-1, 8), (127, 8), (-128, 8),
            (5, 4), (-8, 4), (-1, 1), (300, 16), (-300, 16)]


@exercise(title="two's complement bits of an integer", cases=_bits_cases,
          hint="a negative value v is stored as 2^bits + v; format(n, '08b') writes n with 8 binary digits.")
def twos_complement_bits(value, bits):
    """The `bits`-long two's complement bit string of `value`, most significant bit first."""
    return format(value % (2 ** bits), f"0{bits}b")


def _decode_cases():
    return [("11010101",), ("00000000",), ("01111111",), ("10000000",), ("11111111",), ("0",),
            ("1",), ("0110",), ("1010",), ("1000000000000000",), ("0000000100101100",)]


@exercise(title="read a bit string as a signed integer", cases=_decode_cases, atol=0.0, rtol=0.0,
          hint="read it as unsigned with int(bits, 2); if the first bit is 1, subtract 2^len(bits).")
def decode_signed(bitstring):
    """The integer a two's complement bit string stands for ('11010101' -> -43)."""
    value = int(bitstring, 2)
    return value - 2 ** len(bitstring) if bitstring[0] == "1" else value


def _memory_cases():
    return [(7_000_000_000, 32), (7_000_000_000, 16), (7_000_000_000, 8), (7_000_000_000, 4),
            (70_000_000_000, 16), (22_700_000, 32), (1_000_000, 2), (0, 16)]


@exercise(title="memory of a model's weights", cases=_memory_cases,
          hint="bytes = n_params x bits / 8, and 1 GB here is 10^9 bytes (not 2^30).")
def weight_memory_gb(n_params, bits):
    """GB (10^9 bytes) needed to store `n_params` weights at `bits` bits each."""
    return n_params * bits / 8 / 1e9


def _fp16_cases():
    return [(1 / 3,), (0.1,), (1.0,), (-2.5,), (65504.0,), (65520.0,), (70000.0,), (-1e6,),
            (2049.0,), (1e-5,), (1e-8,), (0.0,)]


@exercise(title="the value float16 stores", cases=_fp16_cases, atol=0.0, rtol=1e-12,
          hint="put x in a tensor, cast it with .to(torch.float16) (or .half()) and read it back "
               "with .item().")
def to_fp16(x):
    """The Python float that float16 actually stores for `x` (rounded to nearest, inf on overflow)."""
    return torch.tensor(x, dtype=torch.float64).to(torch.float16).item()
