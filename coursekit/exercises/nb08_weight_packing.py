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
          hint=("which offset moves the smallest signed code of `bits` bits to 0? Add it to every code. "
                "The trap: at 8 bits the sums reach 255, which int8 cannot hold.",
                "the offset is 2**(bits-1). Widen first (codes.to(torch.int16)), add, then convert with "
                ".to(torch.uint8)."))
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
          hint=("four 2-bit codes fill one byte: the first in the lowest two bits, the next in the two "
                "above, and so on. Work on all bytes at once: arrange the codes in rows of four, one row "
                "per byte, after padding the end with zeros.",
                "flatten, pad with zeros to a multiple of 4 (torch.nn.functional.pad), reshape to (-1, "
                "4); shift column j left by 2*j bits (shifts 0, 2, 4, 6: torch.arange(0, 8, 2)). The "
                "shifted columns do not overlap, so their sum along dim=1 is the byte.",
                "keep the codes and the shifts uint8, and make the sum uint8 too (sum(dim=1, "
                "dtype=torch.uint8)): return a 1-D uint8 tensor of ceil(n / 4) bytes."))
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
          hint=("the inverse of packing: read the four 2-bit fields of each byte, lowest bits first, "
                "keep them in that order, and drop the padding at the end: only the first n codes are "
                "real.",
                "shift each byte right by 0, 2, 4 and 6 bits at once (packed.reshape(-1, 1) >> shifts), "
                "keep the lowest two bits with & 0b11, flatten and slice [:n]."))
def unpack_2bit(packed, n):
    return packing.unpack(packed, 2, n)


# --------------------------------------------------------------------------- 08.bits_per_weight
def _bpw_cases():
    return [(4, 64), (4, 16), (2, 128), (4, 128), (8, 1)]


@exercise(title="the real cost of a packed weight", cases=_bpw_cases,
          hint=("a packed weight costs its code's bits plus its share of what its group stores besides "
                "the codes. Here each group stores an fp32 scale and an int8 zero point: how many bits "
                "is that, and over how many weights is it spread?",
                "the group's extra is 32 + 8 = 40 bits, spread over group_size weights: bits + 40 / "
                "group_size."))
def bits_per_weight(bits, group_size):
    return bits + (32 + 8) / group_size
