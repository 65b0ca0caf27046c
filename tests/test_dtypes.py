import math

import pytest
import torch

from coursekit import dtypes as dt

FLOAT8 = [d for d in dt.FLOAT_DTYPES if torch.finfo(d).bits == 8]


# -- integers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, bits", [(2, "00000010"), (6, "00000110"), (33, "00100001"),
                                         (100, "01100100"), (-43, "11010101"), (-1, "11111111"),
                                         (-128, "10000000"), (127, "01111111")])
def test_int_to_bits_worked_examples(value, bits):
    assert dt.int_to_bits(value) == bits
    assert dt.bits_to_int(bits) == value


def test_same_bits_signed_and_unsigned():
    assert dt.bits_to_int("11010101", signed=True) == -43
    assert dt.bits_to_int("11010101", signed=False) == 213
    assert dt.int_to_bits(213, signed=False) == "11010101"


def test_int_range_matches_iinfo():
    assert dt.int_range(8) == (-128, 127)
    assert dt.int_range(8, signed=False) == (0, 255)
    assert dt.int_range(4) == (-8, 7)
    assert dt.int_range(1, signed=False) == (0, 1)
    for dtype in (torch.int8, torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        assert dt.int_range(info.bits, signed=dtype.is_signed) == (info.min, info.max)


def test_int_bits_match_torch_storage():
    values = torch.arange(-128, 128, dtype=torch.int8)
    as_uint8 = values.view(torch.uint8).tolist()
    for v, u in zip(values.tolist(), as_uint8):
        assert dt.int_to_bits(v) == format(u, "08b")


def test_decode_int_formula():
    d = dt.decode_int("11010101")
    assert d.value == -43
    assert d.formula == "-128 + 64 + 16 + 4 + 1"
    assert dt.decode_int("00000000").formula == "0"
    assert dt.decode_int("11010101", signed=False).formula == "128 + 64 + 16 + 4 + 1"


def test_int_bad_inputs():
    with pytest.raises(ValueError, match="value: expected an int from -128 to 127, got 128"):
        dt.int_to_bits(128)
    with pytest.raises(ValueError, match="from 0 to 255"):
        dt.int_to_bits(-1, signed=False)
    with pytest.raises(TypeError, match="value"):
        dt.int_to_bits(2.0)
    with pytest.raises(ValueError, match="bits"):
        dt.int_range(0)
    with pytest.raises(TypeError, match="bits"):
        dt.int_range(8.0)
    with pytest.raises(ValueError, match="bitstring"):
        dt.bits_to_int("1101 0101")
    with pytest.raises(ValueError, match="bitstring"):
        dt.bits_to_int("")
    with pytest.raises(TypeError, match="bitstring"):
        dt.bits_to_int(0b1101)


# -- floats --------------------------------------------------------------------------------------

def test_float_layouts():
    assert dt.float_layout(torch.float32) == (1, 8, 23)
    assert dt.float_layout(torch.float16) == (1, 5, 10)
    assert dt.float_layout(torch.bfloat16) == (1, 8, 7)
    assert dt.float_layout("bf16") == (1, 8, 7)
    if hasattr(torch, "float8_e4m3fn"):
        assert dt.float_layout(torch.float8_e4m3fn) == (1, 4, 3)
        assert dt.float_layout(torch.float8_e5m2) == (1, 5, 2)


@pytest.mark.parametrize("dtype, bits", [
    (torch.float32, "0" "01111101" "01010101010101010101011"),
    (torch.float16, "0" "01101" "0101010101"),
    (torch.bfloat16, "0" "01111101" "0101011"),
])
def test_one_third(dtype, bits):
    fb = dt.float_to_bits(1 / 3, dtype)
    assert fb.bits == bits
    assert fb.value == torch.tensor(1 / 3, dtype=dtype).item()
    d = dt.decode_float(bits, dtype)
    assert d.kind == "normal" and d.exponent == -2 and d.sign == 0
    assert d.formula.startswith("(-1)^0 x 2^(-2) x 1.33")
    assert (-1) ** d.sign * 2.0 ** d.exponent * d.significand == d.value


def test_fp16_max_and_special_values():
    fb = dt.float_to_bits(65504, torch.float16)
    assert (fb.sign, fb.exponent, fb.mantissa) == ("0", "11110", "1111111111")
    assert dt.float_to_bits(65520, torch.float16).bits == "0111110000000000"  # rounds up to inf
    assert dt.bits_to_float("0111110000000000", torch.float16) == math.inf
    assert dt.decode_float("1111110000000000", torch.float16).kind == "inf"
    assert dt.decode_float("0111111000000000", torch.float16).kind == "nan"
    assert dt.float_to_bits(-0.0, torch.float16).bits == "1" + "0" * 15
    assert dt.decode_float("0" * 16, torch.float16).kind == "zero"


def test_subnormal():
    smallest = 2.0 ** -24  # float16: 2^(1-15) x 2^-10
    fb = dt.float_to_bits(smallest, torch.float16)
    assert fb.bits == "0" + "00000" + "0000000001"
    d = dt.decode_float(fb.bits, torch.float16)
    assert d.is_subnormal and d.exponent == -14 and d.significand == 2.0 ** -10
    assert d.value == smallest


@pytest.mark.parametrize("dtype", dt.FLOAT_DTYPES)
def test_round_trip_random_values(dtype):
    g = torch.Generator().manual_seed(0)
    scale = min(100.0, torch.finfo(dtype).max / 4)
    values = (torch.randn(200, generator=g, dtype=torch.float64) * scale).tolist()
    values += [0.0, -0.0, torch.finfo(dtype).tiny / 4, torch.finfo(dtype).max]
    for x in values:
        fb = dt.float_to_bits(x, dtype)
        expected = torch.tensor(x, dtype=torch.float64).to(dtype).to(torch.float32).item()
        assert fb.value == expected
        assert dt.bits_to_float(fb.bits, dtype) == expected
        assert dt.decode_float(fb.bits, dtype).value == expected


@pytest.mark.parametrize("dtype", FLOAT8)
def test_every_float8_pattern(dtype):
    """All 256 patterns: decode agrees with torch, and non-NaN values encode back to their bits."""
    every = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).to(torch.float32)
    for pattern, value in enumerate(every.tolist()):
        bits = format(pattern, "08b")
        d = dt.decode_float(bits, dtype)
        if math.isnan(value):
            assert d.kind == "nan"
            continue
        assert d.value == value
        assert dt.float_to_bits(value, dtype).bits == bits
        if d.kind in ("normal", "subnormal", "zero"):
            assert (-1) ** d.sign * 2.0 ** d.exponent * d.significand == value


def test_float_bad_inputs():
    with pytest.raises(ValueError, match="16 bits"):
        dt.bits_to_float("0101", torch.float16)
    with pytest.raises(ValueError, match="dtype"):
        dt.float_to_bits(1.0, torch.int8)
    with pytest.raises(ValueError, match="dtype"):
        dt.float_layout("float13")
    with pytest.raises(TypeError, match="dtype"):
        dt.float_layout(16)
    with pytest.raises(TypeError, match="value"):
        dt.float_to_bits("1.0", torch.float16)


# -- any dtype, and the table ----------------------------------------------------------------

def test_decode_dispatches_on_dtype():
    assert dt.decode("11010101", torch.int8).value == -43
    assert dt.decode("11010101", torch.uint8).value == 213
    assert dt.decode(dt.value_to_bits(0.5, torch.bfloat16), torch.bfloat16).value == 0.5
    assert dt.bit_roles(torch.int8)[:2] == ["sign", "value"]
    assert dt.bit_roles(torch.float16).count("exponent") == 5


def test_dtype_table_matches_finfo_and_iinfo():
    rows = {r.name: r for r in dt.dtype_table()}
    assert {"int8", "uint8", "int16", "int32", "float32", "float16", "bfloat16"} <= set(rows)
    for name, row in rows.items():
        dtype = getattr(torch, name)
        if dtype.is_floating_point:
            info = torch.finfo(dtype)
            assert (row.bits, row.max, row.min, row.tiny, row.eps) == (
                info.bits, info.max, info.min, info.tiny, info.eps)
            assert 1 + row.exponent_bits + row.mantissa_bits == row.bits
        else:
            info = torch.iinfo(dtype)
            assert (row.bits, row.min, row.max) == (info.bits, info.min, info.max)
            assert row.tiny is None and row.eps is None


def test_format_table_is_aligned_and_stable():
    text = dt.format_table(dt.dtype_table([torch.int8, torch.float16, "bf16"]))
    lines = text.splitlines()
    assert lines[0].split() == ["dtype", "bits", "exp", "mant", "min", "max", "tiny", "eps"]
    assert lines[1].split() == ["int8", "8", "-", "-", "-128", "127", "-", "-"]
    assert lines[2].split() == ["float16", "16", "5", "10", "-6.55e+04", "6.55e+04", "6.104e-05",
                                "0.0009766"]
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert text == dt.format_table(dt.dtype_table([torch.int8, torch.float16, "bf16"]))


def test_bit_layout_figure_labels_every_part_with_its_bit_count():
    import matplotlib.pyplot as plt

    from coursekit import dtypes, plots
    fig = plots.plot_bit_layout(dtypes.FLOAT_DTYPES)
    ax = fig.axes[0]
    counts = [int(t.get_text()) for t in ax.texts if t.get_text().isdigit()]
    expected = [n for dt in dtypes.FLOAT_DTYPES for n in dtypes.float_layout(dt) if n]
    assert counts == expected                  # one label per part, in order, fitting any box width
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "sign"
    plt.close(fig)
