"""Exercises of notebook 01 (data types): which format fits, ZeRO's bytes per GPU, integer widths, two's
complement, float16 rounding.

Integer answers are compared exactly (atol = rtol = 0): an off-by-one range must fail even for
64-bit integers, where a relative tolerance would hide it.
"""

from __future__ import annotations

import torch

from ..memory import WEIGHT_SHARE
from .spec import exercise


def _smallest_bits_cases():
    return [
        ([100, -3],),                       # the notebook's example: 8 bits
        ([127],), ([-128],),                # both ends of int8
        ([128],), ([-129],),                # one past them: 9 bits
        ([0],), ([-1],), ([0, -1, 0],),     # one bit holds -1 and 0
        ([1],),                             # +1 needs a sign bit and a value bit
        ([-4, 3],), ([-3, 4],),             # 3 bits, then 4: the positive side is shorter
        ([255, 0],),                        # fits a uint8, not an int8
        ([2 ** 31 - 1, -5],), ([-2 ** 63],), ([2 ** 40, -(2 ** 40)],),
    ]


@exercise(forbid=("coursekit.dtypes.bits_to_int", "coursekit.dtypes.decode_int", "coursekit.dtypes.decode"),
          title="the fewest bits that hold these integers", cases=_smallest_bits_cases, atol=0.0, rtol=0.0,
          hint=("look at both ends of the list, and remember that the two sides of a signed range are not "
                "the same size: -128 fits in 8 bits, +128 does not. A list of only 0 and -1 fits in one bit.",
                "try bits = 1, 2, 3, ... and stop at the first width whose range (the table above) holds "
                "both the smallest and the largest value of the list.",
                "the answer is the smallest b with -2**(b-1) <= min(values) and max(values) <= 2**(b-1) - 1; "
                "return it as a Python int."))
def smallest_signed_bits(values):
    """The fewest bits of a two's complement integer that can hold every value in `values`."""
    low, high = min(values), max(values)
    bits = 1
    while not (-(2 ** (bits - 1)) <= low and high <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def _bits_cases():
    return [(2, 8), (6, 8), (33, 8), (100, 8), (-43, 8), (0, 8), (-1, 8), (127, 8), (-128, 8),
            (5, 4), (-8, 4), (-1, 1), (300, 16), (-300, 16)]


@exercise(title="two's complement bits of an integer",
          forbid=("coursekit.dtypes.int_to_bits", "coursekit.dtypes.value_to_bits"), cases=_bits_cases,
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


@exercise(title="read a bit string as a signed integer",
          forbid=("coursekit.dtypes.bits_to_int", "coursekit.dtypes.decode_int", "coursekit.dtypes.decode"), cases=_decode_cases, atol=0.0, rtol=0.0,
          hint=("in two's complement the first bit weighs negative: in an n-bit string it stands for "
                "-2^(n-1) instead of +2^(n-1). The length of the string tells you n; it is not always 8.",
                "read the string as an unsigned number first with int(bitstring, 2); if its first "
                "character is '1', subtract 2^len(bitstring)."))
def decode_signed(bitstring):
    """The integer a two's complement bit string stands for ('11010101' -> -43)."""
    value = int(bitstring, 2)
    return value - 2 ** len(bitstring) if bitstring[0] == "1" else value


def _widest_cases():
    return [
        (7_000_000_000, 16),     # a 7B model on a T4: fp16 is 14 GB, over 80 % of 16 GB -> 8 bits
        (7_000_000_000, 80),     # on an 80 GB card: fp32 (28 GB) fits
        (70_000_000_000, 80),    # 70B on 80 GB: only 4 bits (35 GB)
        (70_000_000_000, 16),    # 70B on a T4: nothing fits
        (13_000_000_000, 24),    # fp16 26 GB no, int8 13 GB yes
        (135_000_000, 4),        # a small model fits in fp32 anywhere
        (8_000_000_000, 24),     # 32 GB no, 16 GB <= 19.2 GB yes
        (30_000_000_000, 24),    # 30B on 24 GB: int8 30 GB no, 4 bits 15 GB <= 19.2 GB
        (1_000_000_000, 1),      # 0.8 GB allowed: 0.5 GB of 4-bit weights
    ]


@exercise(title="the most precise format that fits", cases=_widest_cases, atol=0.0, rtol=0.0,
          hint=("use the rule of the table above: the weights may take 80 % of the GPU's memory (GB are "
                "10^9 bytes), the rest is for activations. Try the formats from the most precise down, "
                "and keep in mind that a huge model may fit in none of them.",
                "for bits in 32, 16, 8, 4: the weights take n_params * bits / 8 bytes; return the first "
                "bits whose weights are at most 0.8 * gpu_gb * 1e9 bytes, and None after the loop."))
def widest_fitting_bits(n_params, gpu_gb):
    """The widest of 32, 16, 8 and 4 bits per weight whose weights fit the 80 % rule, or None."""
    for bits in (32, 16, 8, 4):
        if n_params * bits / 8 <= WEIGHT_SHARE * gpu_gb * 1e9:
            return bits
    return None


def _zero_cases():
    seven_b = 7_000_000_000
    return [
        (seven_b, 8, 1),         # the notebook's example: only the optimizer state is split
        (seven_b, 8, 0),         # plain data parallel: every GPU holds all 16 bytes per parameter
        (seven_b, 8, 2), (seven_b, 8, 3),
        (seven_b, 1, 0), (seven_b, 1, 3),   # one GPU: sharding changes nothing at any stage
        (seven_b, 64, 1), (seven_b, 64, 2), (seven_b, 64, 3),
        (70_000_000_000, 1024, 3),          # a 70B model on 1024 GPUs
        (3_000_000_000, 3, 2),              # bytes that do not divide evenly: a float
        (0, 8, 3),                          # no parameters, no bytes
    ]


@exercise(title="ZeRO: training bytes on each GPU", cases=_zero_cases,
          forbid=("coursekit.memory.zero_bytes_per_gpu",),
          hint=("go part by part: per parameter, 2 bytes of weights, 2 of gradients and 12 of optimizer "
                "state (the fp32 master copy and both moments). Each stage splits one more part across the "
                "GPUs, the optimizer state first. On one GPU every stage costs 16 bytes per parameter.",
                "start from the three parts in bytes (2, 2 and 12 times n_params); from stage 1 on divide "
                "the optimizer part by n_gpus, from stage 2 on the gradients too, at stage 3 the weights too; "
                "return the sum as a float.",
                "stage 2, for example, is 2 * n_params + (2 + 12) * n_params / n_gpus; stage 0 is "
                "16 * n_params whatever n_gpus is."))
def zero_bytes_per_gpu(n_params, n_gpus, stage):
    """Bytes of mixed-precision Adam training state on each GPU under ZeRO `stage` (0 = plain data parallel)."""
    weights, gradients, optimizer = 2.0 * n_params, 2.0 * n_params, 12.0 * n_params
    if stage >= 1:
        optimizer /= n_gpus
    if stage >= 2:
        gradients /= n_gpus
    if stage >= 3:
        weights /= n_gpus
    return weights + gradients + optimizer


def _fp16_cases():
    return [(1 / 3,), (0.1,), (1.0,), (-2.5,), (65504.0,), (65520.0,), (70000.0,), (-1e6,),
            (2049.0,), (1e-5,), (1e-8,), (0.0,)]


@exercise(title="the value float16 stores",
          forbid=("coursekit.dtypes.float_to_bits", "coursekit.dtypes.value_to_bits"), cases=_fp16_cases, atol=0.0, rtol=1e-12,
          hint=("don't reproduce the rounding by hand: let PyTorch store the number as float16 and read "
                "back what it kept. Overflow to inf then comes for free.",
                "make a float64 tensor of x (it holds a Python float exactly, so the cast is the only "
                "rounding), convert it with .to(torch.float16) (or .half()) and read it back with "
                ".item()."))
def to_fp16(x):
    """The Python float that float16 actually stores for `x` (rounded to nearest, inf on overflow)."""
    return torch.tensor(x, dtype=torch.float64).to(torch.float16).item()
