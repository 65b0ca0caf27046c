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
          hint=("two's complement spends one bit on the sign, and the two sides are not the same size: "
                "zero counts among the non-negative values, so the negative side has one value more. "
                "With 8 bits there are 256 values in all. Return a tuple (smallest, largest).",
                "half of the 2^bits values are negative and half are zero or positive; for 8 bits that "
                "is (-128, 127). Write both ends with 2 ** (bits - 1).",
                "smallest = -2^(bits-1), largest = 2^(bits-1) - 1."))
def signed_range(bits):
    """Smallest and largest value of a signed two's complement integer with `bits` bits."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _bits_cases():
    return [(2, 8), (6, 8), (33, 8), (100, 8), (-43, 8), (0, 8), (-1, 8), (127, 8), (-128, 8),
            (5, 4), (-8, 4), (-1, 1), (300, 16), (-300, 16)]


@exercise(title="two's complement bits of an integer", cases=_bits_cases,
          hint=("which unsigned number stands for a negative value? In two's complement -1 is all ones, "
                "and a non-negative value is stored as itself. The string must be exactly `bits` "
                "characters long, leading zeros included.",
                "a negative v is stored as the unsigned number 2^bits + v (-43 in 8 bits is 256 - 43 = "
                "213); Python's modulo gives that number for both signs: value % 2**bits.",
                "format(n, '08b') writes n with 8 binary digits, zeros in front; build the format string "
                "from `bits` (f'0{bits}b')."))
def twos_complement_bits(value, bits):
    """The `bits`-long two's complement bit string of `value`, most significant bit first."""
    return format(value % (2 ** bits), f"0{bits}b")


def _decode_cases():
    return [("11010101",), ("00000000",), ("01111111",), ("10000000",), ("11111111",), ("0",),
            ("1",), ("0110",), ("1010",), ("1000000000000000",), ("0000000100101100",)]


@exercise(title="read a bit string as a signed integer", cases=_decode_cases, atol=0.0, rtol=0.0,
          hint=("in two's complement the first bit weighs negative: in an n-bit string it stands for "
                "-2^(n-1) instead of +2^(n-1). The length of the string tells you n; it is not always 8.",
                "read the string as an unsigned number first with int(bitstring, 2); if its first "
                "character is '1', subtract 2^len(bitstring)."))
def decode_signed(bitstring):
    """The integer a two's complement bit string stands for ('11010101' -> -43)."""
    value = int(bitstring, 2)
    return value - 2 ** len(bitstring) if bitstring[0] == "1" else value


def _memory_cases():
    return [(7_000_000_000, 32), (7_000_000_000, 16), (7_000_000_000, 8), (7_000_000_000, 4),
            (70_000_000_000, 16), (22_700_000, 32), (1_000_000, 2), (0, 16)]


@exercise(title="memory of a model's weights", cases=_memory_cases,
          hint=("follow the units: bits per weight, bits per byte, bytes per GB. Here 1 GB is 10^9 "
                "bytes, as disks and GPUs are sold, not 2^30.",
                "bytes = n_params x bits / 8; divide by 10^9 for GB."))
def weight_memory_gb(n_params, bits):
    """GB (10^9 bytes) needed to store `n_params` weights at `bits` bits each."""
    return n_params * bits / 8 / 1e9


def _fp16_cases():
    return [(1 / 3,), (0.1,), (1.0,), (-2.5,), (65504.0,), (65520.0,), (70000.0,), (-1e6,),
            (2049.0,), (1e-5,), (1e-8,), (0.0,)]


@exercise(title="the value float16 stores", cases=_fp16_cases, atol=0.0, rtol=1e-12,
          hint=("don't reproduce the rounding by hand: let PyTorch store the number as float16 and read "
                "back what it kept. Overflow to inf then comes for free.",
                "make a float64 tensor of x (it holds a Python float exactly, so the cast is the only "
                "rounding), convert it with .to(torch.float16) (or .half()) and read it back with "
                ".item()."))
def to_fp16(x):
    """The Python float that float16 actually stores for `x` (rounded to nearest, inf on overflow)."""
    return torch.tensor(x, dtype=torch.float64).to(torch.float16).item()
