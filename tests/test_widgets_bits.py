"""The bit explorer, driven headless: set widget values as a learner's clicks would."""

import pytest
import torch

from coursekit import dtypes as dt
from coursekit.widgets import BitExplorer, bit_explorer


def test_starts_on_the_bits_of_the_value():
    e = bit_explorer(torch.float16, value=1 / 3)
    assert len(e.toggles) == 16
    assert e.bits == dt.float_to_bits(1 / 3, torch.float16).bits
    assert e.value == dt.bits_to_float(e.bits, torch.float16)
    assert "(-1)^0 x 2^(-2)" in e.value_label.value
    assert [t.button_style for t in e.toggles[:2]] == ["danger", "success"]
    assert e.toggles[-1].button_style == "info"


def test_flipping_the_sign_bit_negates():
    e = bit_explorer(torch.bfloat16, value=2.5)
    before = e.value_label.value
    e.toggles[0].value = True
    assert e.value == -2.5
    assert e.value_label.value != before and "-2.5" in e.value_label.value
    assert e.toggles[0].description == "1"
    assert e.value_input.value == -2.5


def test_flipping_a_mantissa_bit_adds_its_weight():
    e = bit_explorer(torch.float16, value=1.0)  # 0 01111 0000000000
    e.toggles[6].value = True                   # first mantissa bit: worth 2^-1 at exponent 0
    assert e.value == 1.5
    e.toggles[-1].value = True                  # last mantissa bit: 2^-10
    assert e.value == 1.5 + 2 ** -10
    assert e.value == dt.bits_to_float(e.bits, torch.float16)


def test_int8_shows_twos_complement():
    e = bit_explorer(torch.int8, value=-43)
    assert e.bits == "11010101" and e.value == -43
    assert "-128 + 64 + 16 + 4 + 1" in e.value_label.value
    e.toggles[0].value = False                  # drop the sign bit's -128
    assert e.value == 85


def test_changing_dtype_keeps_the_value():
    e = bit_explorer(torch.float16, value=0.1)
    e.dtype_dropdown.value = torch.bfloat16
    assert len(e.toggles) == 16 and e.bits == dt.float_to_bits(e.value_input.value, torch.bfloat16).bits
    e.dtype_dropdown.value = torch.float32
    assert len(e.toggles) == 32
    e.dtype_dropdown.value = torch.int8
    assert len(e.toggles) == 8 and e.value == 0  # 0.1 rounds to 0
    e.set_value(300)                            # clamps to the int8 range
    assert e.value == 127


def test_typing_a_value_and_setting_bits():
    e = bit_explorer(torch.float16, value=1.0)
    e.value_input.value = 65504.0
    assert e.bits == "0111101111111111"
    e.set_bits("0111110000000000")
    assert e.value == float("inf") and "infinity" in e.value_label.value


def test_displays_itself():
    bundle = bit_explorer()._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_bad_inputs():
    with pytest.raises(ValueError, match="dtype"):
        BitExplorer(torch.int32)
    with pytest.raises(TypeError, match="value"):
        BitExplorer(torch.float16, value="one")
    with pytest.raises(ValueError, match="bitstring"):
        bit_explorer(torch.float16).set_bits("0101")
