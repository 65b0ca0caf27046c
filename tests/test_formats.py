"""coursekit.formats on its own: the bit-level tables of the specs, storage to the byte, errors."""
import math

import pytest
import torch

import coursekit.formats as F
from coursekit.formats import minifloat

# QLoRA (Dettmers et al. 2023), appendix E: the NF4 levels as published.
NF4_PAPER = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def test_nf4_levels_are_the_published_table_bit_for_bit():
    levels = F.nf4_levels()
    assert levels.dtype == torch.float32 and levels.shape == (16,)
    assert torch.equal(levels, torch.tensor(NF4_PAPER, dtype=torch.float32))


def test_nf4_levels_split_a_normal_into_nearly_equal_mass():
    # The point of NF4: each level's bucket holds a similar share of N(0, 1) weights.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1 << 16, generator=g).reshape(-1, 64)
    counts = torch.bincount(F.encode(x, "nf4").codes.reshape(-1).long(), minlength=16).float()
    inner = counts[1:-1] / counts.sum()          # the two end levels only catch each block's absmax
    assert inner.min() > 0.03 and inner.max() < 0.11


def test_e2m1_code_table_follows_the_ocp_spec():
    values = minifloat.e2m1_decode(torch.arange(16, dtype=torch.uint8))
    assert values.tolist() == list(minifloat.E2M1_VALUES)
    # Bit by bit: 0b0101 is sign 0, exponent 10, mantissa 1 -> 2^(2-1) * 1.5 = 3.
    assert minifloat.e2m1_decode(torch.tensor([0b0101, 0b1111, 0b0001])).tolist() == [3.0, -6.0, 0.5]


def test_e2m1_encode_rounds_to_nearest_with_the_chosen_ties():
    y = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 100.0, -0.2, -2.6, 0.0, 2.4])
    assert minifloat.e2m1_decode(minifloat.e2m1_encode(y)).tolist() == \
        [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 0.0, -3.0, 0.0, 2.0]
    assert minifloat.e2m1_decode(minifloat.e2m1_encode(y, ties="toward_zero")).tolist() == \
        [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 6.0, 0.0, -3.0, 0.0, 2.0]
    assert minifloat.e2m1_encode(torch.tensor([-0.1])).item() == 0      # never negative zero
    # Every code decodes and re-encodes to itself (except -0, which becomes +0).
    codes = torch.arange(16, dtype=torch.uint8)
    again = minifloat.e2m1_encode(minifloat.e2m1_decode(codes))
    assert again.tolist() == [c if c != 8 else 0 for c in range(16)]


def test_e8m0():
    e = torch.tensor([127, 128, 126, 0, 254, 255], dtype=torch.uint8)
    v = minifloat.e8m0_decode(e)
    assert v[:3].tolist() == [1.0, 2.0, 0.5] and v[3].item() == 2.0 ** -127 and v[4].item() == 2.0 ** 127
    assert math.isnan(v[5].item())
    # MX shared exponent: floor(log2(amax)) - 2. amax 6 -> 2^0; amax 8 -> 2^1; amax 0.3 -> 2^-4.
    amax = torch.tensor([6.0, 8.0, 7.99, 0.3, 0.0])
    assert minifloat.e8m0_from_amax(amax).tolist() == [127, 128, 127, 123, 0]


@pytest.mark.parametrize("fmt,expected", [("nf4", 4.5), ("fp4_e2m1", 4.5), ("mxfp4", 4.25), ("nvfp4", 4.5),
                                          ("fp8_e4m3", 8.0), ("fp8_e5m2", 8.0), ("q8_0", 8.5), ("q4_0", 4.5),
                                          ("q4_1", 5.0)])
def test_bits_per_weight(fmt, expected):
    assert F.bits_per_weight(fmt) == expected


def test_storage_is_exact_with_every_scale():
    shape = (256, 768)
    n = 256 * 768
    assert F.nbytes(shape, "q8_0") == n // 32 * 34
    assert F.nbytes(shape, "q4_0") == n // 32 * 18
    assert F.nbytes(shape, "q4_1") == n // 32 * 20
    assert F.nbytes(shape, "mxfp4") == n // 32 * 17
    assert F.nbytes(shape, "nf4") == n // 2 + n // 64 * 4
    assert F.nbytes(shape, "nvfp4") == n // 2 + n // 16 + 4
    assert F.nbytes(shape, "fp8_e4m3") == n + 4
    assert F.nbytes(shape, "fp8_e4m3", granularity="per_row") == n + 256 * 4
    assert F.bits_per_weight("nvfp4", shape) == 8 * (n // 2 + n // 16 + 4) / n
    x = torch.randn(shape)
    for fmt in F.FORMATS:
        assert F.encode(x, fmt).nbytes == F.nbytes(shape, fmt)


@pytest.mark.parametrize("fmt", list(F.FORMATS))
def test_roundtrip_shape_dtype_error_and_zeros(fmt):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 128, generator=g) * 0.02
    y = F.roundtrip(x, fmt)
    assert y.shape == x.shape and y.dtype == x.dtype
    rel = ((x - y) ** 2).mean() / (x ** 2).mean()
    assert rel < (0.02 if F.FORMATS[fmt].code_bits == 4 else 0.005)
    assert torch.equal(F.roundtrip(torch.zeros(4, 64), fmt), torch.zeros(4, 64))
    assert F.roundtrip(x.half(), fmt).dtype == torch.float16


def test_block_formats_keep_the_block_absmax_or_close():
    x = torch.tensor([[0.1] * 31 + [-3.0]])
    assert F.roundtrip(x, "q4_0")[0, -1].item() == pytest.approx(-3.0, rel=1e-3)   # the signed max is exact
    assert F.roundtrip(x, "q8_0")[0, -1].item() == pytest.approx(-3.0, rel=1e-3)


def test_fp8_is_torch_cast_of_the_scaled_tensor():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 64, generator=g)
    for fmt, dtype in (("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)):
        enc = F.encode(x, fmt)
        s = x.abs().max() / torch.finfo(dtype).max
        assert torch.equal(enc.codes.float(), (x / s).to(dtype).float().reshape(enc.codes.shape))
        assert torch.equal(F.decode(enc), (x / s).to(dtype).float() * s)
        rows = F.encode(x, fmt, granularity="per_row")
        s_row = x.abs().amax(dim=1, keepdim=True) / torch.finfo(dtype).max
        assert torch.equal(F.decode(rows), (x / s_row).to(dtype).float() * s_row)
        assert enc.codes.abs().float().max().item() == torch.finfo(dtype).max


def test_fp8_values_from_the_spec():
    # E4M3: largest 448 = 1.75 * 2^8, smallest subnormal 2^-9; E5M2: largest 57344 = 1.75 * 2^15.
    assert torch.finfo(torch.float8_e4m3fn).max == 448 and torch.finfo(torch.float8_e5m2).max == 57344
    assert torch.tensor(2.0 ** -9).to(torch.float8_e4m3fn).float().item() == 2.0 ** -9
    assert torch.tensor(1.0 + 1 / 16).to(torch.float8_e4m3fn).float().item() == 1.0       # tie to even
    assert torch.tensor(1.0 + 3 / 16).to(torch.float8_e4m3fn).float().item() == 1.25


def test_nvfp4_two_level_scales():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 64, generator=g)
    enc = F.encode(x, "nvfp4")
    assert enc.scales.dtype == torch.float8_e4m3fn and enc.scales.shape == (16,)
    assert enc.tensor_scale.item() == pytest.approx(x.abs().max().item() / (6 * 448))
    # The block with the tensor's absmax gets the largest E4M3 scale, 448.
    assert enc.scales.float().max().item() == 448.0


def test_bad_arguments_name_themselves():
    x = torch.randn(4, 64)
    with pytest.raises(ValueError, match=r"fmt: expected one of .*'nf4'.*'q4_0'"):
        F.encode(x, "int3")
    with pytest.raises(ValueError, match="x: expected a last dimension that is a multiple of 32"):
        F.encode(torch.randn(4, 40), "q8_0")
    with pytest.raises(ValueError, match="granularity"):
        F.encode(x, "q8_0", granularity="per_row")
    with pytest.raises(ValueError, match="granularity"):
        F.encode(x, "fp8_e4m3", granularity="per_group")
    with pytest.raises(ValueError, match="x: expected a floating-point torch.Tensor"):
        F.encode(torch.ones(4, 64, dtype=torch.int32), "nf4")
    with pytest.raises(ValueError, match="x: expected finite values"):
        F.encode(torch.full((1, 64), float("inf")), "nf4")
    with pytest.raises(ValueError, match="fmt"):
        F.bits_per_weight("fp16")
    with pytest.raises(ValueError, match="shape"):
        F.bits_per_weight("fp8_e4m3", granularity="per_row")
    with pytest.raises(TypeError, match="encoded"):
        F.decode(x)


def test_codes_and_scales_dtypes():
    x = torch.randn(2, 64)
    kinds = {f: (F.encode(x, f).codes.dtype, F.encode(x, f).scales.dtype) for f in F.FORMATS}
    assert kinds["q8_0"] == (torch.int8, torch.float16)
    assert kinds["q4_0"] == (torch.uint8, torch.float16)
    assert kinds["q4_1"] == (torch.uint8, torch.float16) and F.encode(x, "q4_1").scales.shape == (4, 2)
    assert kinds["mxfp4"] == (torch.uint8, torch.uint8)
    assert kinds["nf4"] == (torch.uint8, torch.float32)
    assert kinds["fp8_e4m3"][0] == torch.float8_e4m3fn


def test_weight_table_counts_bits_and_keeps_the_rounded_copy():
    from torch import nn

    from coursekit.formats.compare import block_grid, fake_quantized, format_weight_table, weight_table
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 128))
    rows = weight_table({"toy": model}, variants=["NF4", "Q8_0", "int4 g32"], keep=["NF4"])
    by = {r.variant: r for r in rows}
    assert by["NF4"].bits["toy"] == 4.5 and by["Q8_0"].bits["toy"] == 8.5 and by["int4 g32"].bits["toy"] == 5.0
    assert by["Q8_0"].error["toy"] < by["NF4"].error["toy"] < 0.02
    kept = by["NF4"].models["toy"]
    assert torch.equal(kept[0].weight, F.roundtrip(model[0].weight.detach(), "nf4"))
    assert torch.equal(kept[2].weight, fake_quantized(model, "NF4")[2].weight)
    assert not by["Q8_0"].models
    assert "NF4" in format_weight_table(rows)
    assert torch.equal(block_grid("nf4"), F.nf4_levels())
    assert block_grid("mxfp4").max().item() == 1.5 and block_grid("q4_0").max().item() == 1.0
    with pytest.raises(ValueError, match="variants"):
        weight_table({"toy": model}, variants=["int3"])


def test_format_figures_render():
    from coursekit import plots
    fig = plots.plot_bit_fields({"FP4 E2M1": (1, 2, 1), "E8M0": (0, 8, 0)})
    assert fig.axes
    fig = plots.plot_grids_on_histogram(torch.randn(1000), {"NF4": F.nf4_levels()})
    assert fig.axes
    fig = plots.plot_error_vs_bits_per_weight({"m": {"a": (4.5, 0.01), "b": (8.5, 1e-4)}})
    assert len(fig.axes) == 2


def test_benchmark_section_runs_on_the_lm():
    import coursekit.models as M
    from benchmarks import formats as bench
    lm, tok = M.load_lm()
    r = bench.run(lm, tok, max_tokens=128)
    assert [row["variant"] for row in r["rows"]][:2] == ["int4 g32", "int4 g128"]
    assert set(r["agreement"]) == set(bench.FOUR_BIT)
    md = bench.to_markdown(r)
    assert "| Q8_0 | 8.500 |" in md and "| NF4 | 4.500 |" in md
