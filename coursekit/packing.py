"""Packing sub-byte codes into bytes.

torch has no 4-bit or 2-bit dtype: a tensor of 4-bit codes stored as uint8 wastes half of every
byte. Packing puts 8 // bits codes side by side in one byte, the first code in the lowest bits:

    [1, 0, 3, 2] at 2 bits  ->  0b10_11_00_01 = 177

Codes here are unsigned (0 .. 2^bits - 1). Quantized codes are signed; `to_unsigned` shifts them
by 2^(bits-1) first, and `to_signed` undoes it.
"""

from __future__ import annotations

import torch

from . import checks

#: The widths `pack` and `unpack` take: a byte holds a whole number of codes of these sizes.
SUPPORTED_BITS = (1, 2, 4)


def _shifts(bits: int, device) -> torch.Tensor:
    """Bit offset of each slot in a byte: 0, bits, 2*bits, ..."""
    return torch.arange(0, 8, bits, dtype=torch.uint8, device=device)


def pack(codes, bits: int) -> torch.Tensor:
    """Pack unsigned `bits`-bit codes (any shape, flattened in order) into a 1-D uint8 tensor.

    bits: one of SUPPORTED_BITS (1, 2, 4). The last byte is padded with zeros when the number of
    codes is not a multiple of 8 // bits; pass the original count to `unpack` to drop the padding.
    """
    checks.check_choice(bits, "bits", SUPPORTED_BITS)
    if isinstance(codes, (list, tuple)):
        codes = torch.tensor(codes)
    checks.check_instance(codes, "codes", torch.Tensor, "a torch.Tensor or a list of ints")
    if codes.is_floating_point() or codes.dtype == torch.bool:
        checks.fail("codes", "an integer tensor", f"dtype {codes.dtype}")
    flat = codes.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) > 2 ** bits - 1):
        checks.fail("codes", f"values in 0..{2 ** bits - 1} for bits={bits} (signed? use to_unsigned first)",
                    f"values in {int(flat.min())}..{int(flat.max())}")
    per_byte = 8 // bits
    pad = (-flat.numel()) % per_byte
    flat = torch.nn.functional.pad(flat.to(torch.uint8), (0, pad))
    slots = flat.reshape(-1, per_byte) << _shifts(bits, flat.device)
    # the slots occupy disjoint bits, so adding them is the same as OR-ing them
    return slots.sum(dim=1, dtype=torch.uint8)


def unpack(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of `pack`: the first `numel` codes, as a 1-D uint8 tensor. bits: 1, 2 or 4.

    numel: from 0 to the number of codes the bytes hold (8 // bits per byte).
    """
    checks.check_choice(bits, "bits", SUPPORTED_BITS)
    checks.check_tensor(packed, "packed")
    if packed.dtype != torch.uint8:
        checks.fail("packed", "a uint8 tensor (the output of pack)", f"dtype {packed.dtype}")
    per_byte = 8 // bits
    checks.check_int(numel, "numel", 0, packed.numel() * per_byte)
    mask = 2 ** bits - 1
    codes = (packed.reshape(-1, 1) >> _shifts(bits, packed.device)) & mask
    return codes.reshape(-1)[:numel]


def to_unsigned(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes in [-2^(b-1), 2^(b-1)-1] -> unsigned codes in [0, 2^b - 1] (as uint8). bits: 1 to 8."""
    checks.check_int(bits, "bits", 1, 8)
    return (codes.to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8)


def to_signed(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes -> signed int8 codes: the inverse of `to_unsigned`. bits: 1 to 8."""
    checks.check_int(bits, "bits", 1, 8)
    return (codes.to(torch.int16) - 2 ** (bits - 1)).to(torch.int8)
