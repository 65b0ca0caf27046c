import pytest
import torch

from coursekit.packing import pack, to_signed, to_unsigned, unpack


def test_worked_example():
    assert pack(torch.tensor([1, 0, 3, 2]), 2).tolist() == [177]
    assert unpack(torch.tensor([177, 255], dtype=torch.uint8), 2, 8).tolist() == [1, 0, 3, 2, 3, 3, 3, 3]


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("n", [1, 7, 8, 33, 1000])
def test_round_trip_and_size(bits, n):
    codes = torch.randint(0, 2 ** bits, (n,), generator=torch.Generator().manual_seed(n))
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n * bits // 8)
    assert torch.equal(unpack(packed, bits, n), codes.to(torch.uint8))


def test_4bit_first_value_in_low_nibble():
    assert pack([0x3, 0xA], 4).tolist() == [0xA3]


def test_signed_round_trip():
    codes = torch.arange(-8, 8, dtype=torch.int8)
    u = to_unsigned(codes, 4)
    assert u.min().item() == 0 and u.max().item() == 15
    assert torch.equal(to_signed(unpack(pack(u, 4), 4, 16), 4), codes)


@pytest.mark.parametrize("codes, bits, exc, words", [
    ([0, 4], 2, ValueError, "0..3"), ([-1], 4, ValueError, "to_unsigned"), ([1], 3, ValueError, "bits"),
    (torch.tensor([0.5]), 4, ValueError, "integer"), ("1010", 2, TypeError, "codes"),
])
def test_bad_input(codes, bits, exc, words):
    with pytest.raises(exc, match=words):
        pack(codes, bits)


def test_unpack_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        unpack(torch.tensor([1, 2]), 4, 2)
    with pytest.raises(ValueError, match="numel: expected an int from 0 to 2, got 3"):
        unpack(torch.tensor([1], dtype=torch.uint8), 4, 3)
