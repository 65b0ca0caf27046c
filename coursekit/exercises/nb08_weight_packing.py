"""Exercises of notebook 08 · Weight packing.

Shifting signed codes to unsigned, packing 2-bit codes four to a byte (first code in the lowest
bits, as `coursekit.packing` does), unpacking them again, and what a packed weight really costs
per value once its scales and zero points are counted.
"""

from __future__ import annotations

import torch

from coursekit import packing

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 08.to_unsigned
def _unsigned_cases():
    g = seeded(80)
    return [
        (torch.randint(-8, 8, (3, 5), generator=g, dtype=torch.int8), 4),
        (torch.tensor([-2, -1, 0, 1], dtype=torch.int8), 2),
        (torch.tensor([-128, -1, 0, 127], dtype=torch.int8), 8),    # int8 + 128 would overflow
        (torch.tensor([-8], dtype=torch.int8), 4),
    ]


@exercise(title="signed codes to unsigned", cases=_unsigned_cases,
          hint="add 2**(bits-1) and return .to(torch.uint8); do the sum in a wider type "
               "(codes.to(torch.int16)) so that no intermediate value overflows int8.")
def to_unsigned(codes, bits):
    return (codes.to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8)


# --------------------------------------------------------------------------- 08.pack_2bit
def _pack_cases():
    g = seeded(81)
    return [
        (torch.tensor([1, 0, 3, 2], dtype=torch.uint8),),                   # the lesson's example: [177]
        (torch.randint(0, 4, (16,), generator=g, dtype=torch.uint8),),
        (torch.randint(0, 4, (4, 6), generator=g, dtype=torch.uint8),),      # 2-D: flattened in order
        (torch.tensor([3, 3, 1], dtype=torch.uint8),),                       # 3 codes: one padded slot
        (torch.tensor([2], dtype=torch.uint8),),                             # 1 code: three padded slots
    ]


@exercise(title="pack 2-bit codes four to a byte", cases=_pack_cases,
          hint="flatten, pad with zeros to a multiple of 4, reshape to (-1, 4), shift column j "
               "left by 2*j bits and add (or OR) the four columns; return a 1-D uint8 tensor.")
def pack_2bit(codes):
    return packing.pack(codes, 2)


# --------------------------------------------------------------------------- 08.unpack_2bit
def _unpack_cases():
    g = seeded(82)
    full = torch.randint(0, 4, (12,), generator=g, dtype=torch.uint8)
    odd = torch.randint(0, 4, (7,), generator=g, dtype=torch.uint8)
    return [
        (torch.tensor([177], dtype=torch.uint8), 4),
        (packing.pack(full, 2), 12),
        (packing.pack(odd, 2), 7),                        # padding in the last byte must be dropped
        (torch.tensor([255, 0], dtype=torch.uint8), 5),
        (torch.tensor([0b11100100], dtype=torch.uint8), 1),
    ]


@exercise(title="unpack 2-bit codes", cases=_unpack_cases,
          hint="for each byte take (byte >> 2*j) & 0b11 for j = 0..3, keep them in that order, "
               "flatten and keep only the first n codes (the rest is padding).")
def unpack_2bit(packed, n):
    return packing.unpack(packed, 2, n)


# --------------------------------------------------------------------------- 08.bits_per_weight
def _bpw_cases():
    return [(4, 64), (4, 16), (2, 128), (4, 128), (8, 1)]


@exercise(title="the real cost of a packed weight", cases=_bpw_cases,
          hint="each group of group_size weights also stores one fp32 scale (32 bits) and one "
               "int8 zero point (8 bits); spread them over the group.")
def bits_per_weight(bits, group_size):
    return bits + (32 + 8) / group_size
