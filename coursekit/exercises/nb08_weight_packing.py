"""Exercises of notebook 08 · Weight packing.

Shifting signed codes to unsigned, packing 2-bit codes four to a byte (first code in the lowest
bits, as `coursekit.packing` does), unpacking them again, and unpacking signed 4-bit codes, the
format of the course's 4-bit layer.
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


@exercise(forbid=("coursekit.packing.to_unsigned",),
          title="signed codes to unsigned", cases=_unsigned_cases,
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


@exercise(title="pack 2-bit codes four to a byte",
          forbid=("coursekit.packing.pack",), cases=_pack_cases,
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


@exercise(title="unpack 2-bit codes",
          forbid=("coursekit.packing.unpack",), cases=_unpack_cases,
          hint=("the inverse of packing: read the four 2-bit fields of each byte, lowest bits first, "
                "keep them in that order, and drop the padding at the end: only the first n codes are "
                "real.",
                "shift each byte right by 0, 2, 4 and 6 bits at once (packed.reshape(-1, 1) >> shifts), "
                "keep the lowest two bits with & 0b11, flatten and slice [:n]."))
def unpack_2bit(packed, n):
    return packing.unpack(packed, 2, n)


# --------------------------------------------------------------------------- 08.unpack_int4
def _int4_case(codes):
    codes = torch.as_tensor(codes, dtype=torch.int8)
    return (packing.pack((codes.to(torch.int16) + 8).to(torch.uint8), 4), codes.numel())


def _int4_cases():
    g = seeded(84)
    return [
        _int4_case(torch.randint(-8, 8, (16,), generator=g)),
        _int4_case(torch.randint(-8, 8, (7,), generator=g)),     # odd: the last byte is half padding
        _int4_case([-8, 7]),                                     # both ends of the range
        _int4_case([-1]),                                        # a single code
        _int4_case([0, 0, 0, 0]),
        _int4_case(torch.randint(-8, 8, (1001,), generator=g)),
    ]


@exercise(title="unpack signed 4-bit codes",
          forbid=("coursekit.packing.unpack", "coursekit.packing.to_signed"), cases=_int4_cases,
          hint=("each byte holds two codes, the first in its low 4 bits; the stored patterns are unsigned "
                "(the signed code plus 8), and an odd count leaves a padding code at the end that is not "
                "part of the answer. The result holds signed int8 codes.",
                "take packed & 0x0F and packed >> 4, interleave them (stack on a new last dimension, then "
                "flatten), keep the first n, convert to int8 (via int16, so nothing wraps) and subtract 8."))
def unpack_int4(packed, n):
    """The first `n` signed 4-bit codes (int8, in [-8, 7]) from bytes holding two codes each."""
    nibbles = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(-1)[:n]
    return (nibbles.to(torch.int16) - 8).to(torch.int8)
