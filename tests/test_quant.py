import pytest
import torch

from coursekit import quant
from coursekit.quant import quantize, quantization_error

WORKED = torch.tensor([[191.6, -13.5, 728.6], [92.14, 295.5, -184.0], [0.0, 684.6, 245.5]])


def outlier_weight(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 256, generator=g)
    w[::16] *= 20  # a few rows with a much wider range
    return w


# ---------------------------------------------------------------- the theory lesson's worked example
def test_worked_example_scale_and_zero_point():
    q = quantize(WORKED, bits=8)
    assert q.scale.item() == pytest.approx(3.5788, abs=1e-4)
    assert q.zero_point.item() == -77
    scale, zp = quant.choose_qparams(WORKED)
    assert scale.item() == pytest.approx(3.5788, abs=1e-4) and zp.item() == -77
    scale, zp = quant.qparams_from_minmax(-184.0, 728.6)          # the same numbers, from min and max
    assert scale.item() == pytest.approx(3.5788, abs=1e-4) and zp.item() == -77 and zp.dtype == torch.int8
    scale, zp = quant.qparams_from_minmax(-184.0, 728.6, bits=8, symmetric=True)
    assert scale.item() == pytest.approx(728.6 / 127) and zp.item() == 0


def test_worked_example_given_scale_error_bounded_inside_range():
    scale, zp = 3.5, -70
    codes = quant.linear_quantize(WORKED, scale, zp)
    back = quant.linear_dequantize(codes, scale, zp)
    lo, hi = scale * (-128 - zp), scale * (127 - zp)
    inside = (WORKED >= lo) & (WORKED <= hi)
    assert ((WORKED - back).abs()[inside] <= scale / 2 + 1e-4).all()
    # 728.6 lies above what this scale can reach (689.5): it is clipped and its error is large
    assert not inside.all() and (WORKED - back).abs()[~inside].min() > scale / 2


def test_good_scale_error_below_half_step():
    q = quantize(WORKED)
    assert ((WORKED - q.dequantize()).abs() <= q.scale / 2 + 1e-4).all()


# ---------------------------------------------------------------- properties on random tensors
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("gran", [dict(granularity="per_tensor"), dict(granularity="per_channel", axis=0),
                                  dict(granularity="per_channel", axis=1), dict(granularity="per_group", group_size=16)])
def test_error_bounded_and_codes_in_range(bits, symmetric, gran):
    x = torch.randn(12, 48, generator=torch.Generator().manual_seed(bits))
    q = quantize(x, bits=bits, symmetric=symmetric, **gran)
    lo, hi = quant.qrange(bits)
    assert q.data.dtype == torch.int8 and q.data.shape == x.shape
    assert int(q.data.min()) >= lo and int(q.data.max()) <= hi
    back = q.dequantize()
    assert back.shape == x.shape and back.dtype == x.dtype
    step = q.blocking.from_blocks(q.blocking.params_to_column(q.scale).expand(q.scale.numel(), -1)
                                  .repeat(1, x.numel() // q.scale.numel()))
    assert ((x - back).abs() <= step / 2 + 1e-5).all()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("clipping", ["minmax", "mse"])
def test_a_group_size_that_does_not_divide_leaves_a_shorter_last_group(symmetric, clipping):
    """576 inputs in groups of 128: four full groups and one of 64, each quantized on its own."""
    x = torch.randn(3, 576, generator=torch.Generator().manual_seed(0)) * 3 + 0.5
    q = quant.quantize(x, 4, symmetric, "per_group", group_size=128, clipping=clipping)
    assert q.scale.shape == (3, 5) and q.data.shape == x.shape
    assert q.nbytes == 3 * 576 // 2 + 15 * 4 + (0 if symmetric else 15)
    for start in range(0, 576, 128):
        part = x[:, start:start + 128]
        ref = quant.quantize(part, 4, symmetric, "per_channel", axis=0, clipping=clipping)
        assert torch.equal(q.data[:, start:start + 128], ref.data), start
        assert torch.equal(q.scale[:, start // 128], ref.scale[:, 0]), start
    torch.testing.assert_close(q.dequantize()[:, 512:], quant.quantize(
        x[:, 512:], 4, symmetric, "per_channel", clipping=clipping).dequantize())


def test_number_of_blocks():
    x = torch.randn(6, 8)
    assert quantize(x).scale.numel() == 1
    assert quantize(x, granularity="per_channel", axis=0).scale.numel() == 6
    assert quantize(x, granularity="per_channel", axis=1).scale.numel() == 8
    assert quantize(x, granularity="per_group", group_size=4).scale.numel() == 12


def test_finer_granularity_lowers_error_on_outlier_rows():
    w = outlier_weight()
    e_tensor = quantization_error(w, quantize(w, bits=4))
    e_channel = quantization_error(w, quantize(w, bits=4, granularity="per_channel"))
    e_group = quantization_error(w, quantize(w, bits=4, granularity="per_group", group_size=32))
    assert e_group <= e_channel <= e_tensor


def test_symmetric_zero_point_is_zero_and_asymmetric_maps_min_max_to_ends():
    x = torch.rand(100) * 3 - 1
    s = quantize(x, symmetric=True)
    assert s.zero_point.item() == 0 and s.data.max().item() == 127
    a = quantize(x)
    assert a.data.min().item() == -128 and a.data.max().item() == 127


def test_one_sided_block_keeps_zero_on_the_grid():
    x = torch.rand(100) * 3 + 1          # all positive: the range is widened to [0, max]
    q = quantize(x, bits=4)
    assert q.zero_point.item() == -8 and q.data.max().item() == 7
    assert ((x - q.dequantize()).abs() <= q.scale / 2 + 1e-6).all()
    assert quantize(torch.tensor([0.0, 0.5, 1.0])).dequantize()[0].item() == 0.0


def test_3d_tensor_per_channel_middle_axis():
    x = torch.randn(2, 5, 6)
    q = quantize(x, granularity="per_channel", axis=1)
    assert q.scale.shape == (1, 5, 1)
    manual = torch.stack([quantize(x[:, c].contiguous()).dequantize() for c in range(5)], dim=1)
    assert torch.allclose(q.dequantize(), manual)


@pytest.mark.parametrize("value", [0.0, 5.0, -2.5, 1e-30])
@pytest.mark.parametrize("symmetric", [False, True])
def test_constant_blocks_come_back_without_nan(value, symmetric):
    x = torch.full((4, 8), value)
    x[0] = 1.0  # a non-constant block beside constant ones
    q = quantize(x, bits=4, symmetric=symmetric, granularity="per_channel")
    back = q.dequantize()
    assert torch.isfinite(back).all() and torch.isfinite(q.scale).all()
    assert torch.allclose(back[1:], x[1:], rtol=1e-6, atol=0)


def test_low_precision_input_keeps_its_dtype():
    x = torch.randn(4, 8).to(torch.bfloat16)
    assert quantize(x).dequantize().dtype == torch.bfloat16


def test_nbytes_counts_packed_codes_and_scales():
    x = torch.randn(64, 128)
    assert quantize(x, bits=8, symmetric=True).nbytes == 64 * 128 + 4
    q4 = quantize(x, bits=4, granularity="per_group", group_size=32)
    assert q4.nbytes == 64 * 128 // 2 + 256 * (4 + 1)
    assert q4.bits_per_value == pytest.approx(4 + 40 / 32)


def test_quantization_error_is_mse():
    x, y = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])
    assert quantization_error(x, y) == pytest.approx(2.0)
    q = quantize(x)
    assert quantization_error(x, q) == quantization_error(x, q.dequantize())


# ---------------------------------------------------------------- fake quantization
def test_fake_quantize_values_on_grid_and_straight_through_gradient():
    x = torch.randn(8, 32, requires_grad=True)
    y = quant.fake_quantize(x, bits=4, granularity="per_group", group_size=8)
    assert torch.equal(y.detach(), quantize(x.detach(), bits=4, granularity="per_group", group_size=8).dequantize())
    (y * torch.arange(32.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(32.0).expand(8, 32))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(bits=1), ValueError, "bits"), (dict(bits=9), ValueError, "bits"), (dict(bits=4.0), TypeError, "bits"),
    (dict(granularity="per_row"), ValueError, "granularity"),
    (dict(granularity="per_channel", axis=2), ValueError, "axis"),
    (dict(granularity="per_group", group_size=0), ValueError, "group_size: expected an int >= 1"),
    (dict(granularity="per_group"), ValueError, "group_size"),
    (dict(group_size=4), ValueError, "group_size"),
    (dict(symmetric="yes"), TypeError, "symmetric"),
])
def test_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        quantize(torch.randn(4, 8), **kwargs)


def test_messages_say_name_expected_and_got():
    for call in (quantize, quant.fake_quantize, quant.choose_qparams):
        with pytest.raises(ValueError, match="^bits: expected an int from 2 to 8, got 9$"):
            call(torch.randn(4, 8), bits=9)
    with pytest.raises(TypeError, match="^bits: expected an int from 2 to 8, got bool$"):
        quant.qrange(True)
    with pytest.raises(ValueError, match="^granularity: expected one of 'per_tensor', 'per_channel', "
                                         "'per_group', got 'per_row'$"):
        quantize(torch.randn(4, 8), granularity="per_row")
    with pytest.raises(ValueError, match="^x: expected finite values"):
        quant.fake_quantize(torch.tensor([1.0, float("nan")]))


def test_fake_quantize_checks_finiteness_once(monkeypatch):
    """One read-back per call: fake_quantize runs in every layer at every training step."""
    calls = []
    check = quant._check_finite
    monkeypatch.setattr(quant, "_check_finite", lambda *args: calls.append(1) or check(*args))
    quant.fake_quantize(torch.randn(8, 32, requires_grad=True), bits=4, granularity="per_group", group_size=8)
    assert len(calls) == 1


@pytest.mark.parametrize("x, exc, words", [
    (torch.arange(6).reshape(2, 3), ValueError, "floating-point"),
    (torch.tensor([1.0, float("nan")]), ValueError, "NaN"),
    (torch.tensor([1.0, float("inf")]), ValueError, "Inf"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
    (torch.empty(0), ValueError, "empty"),
])
def test_bad_tensors(x, exc, words):
    with pytest.raises(exc, match=words):
        quantize(x)


def test_bad_scale_and_codes():
    with pytest.raises(ValueError, match="scale"):
        quant.linear_quantize(torch.randn(3), 0.0, 0)
    with pytest.raises(ValueError, match="integer"):
        quant.linear_dequantize(torch.randn(3), 1.0, 0)
    with pytest.raises(ValueError, match="same shape"):
        quantization_error(torch.randn(3), torch.randn(4))


# ---------------------------------------------------------------- MSE-optimal clipping
def test_mse_clipping_never_worse_per_block_and_much_better_at_4_bits():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(256, 512, generator=g) * (1 + 4 * (torch.rand(256, 512, generator=g) > 0.998))  # sparse outliers
    kw = dict(bits=4, granularity="per_group", group_size=128)
    plain, clipped = quantize(w, **kw), quantize(w, clipping="mse", **kw)
    per_block = lambda q: (q.dequantize() - w).pow(2).reshape(-1, 128).mean(1)
    assert (per_block(clipped) <= per_block(plain) + 1e-9).all()
    assert quantization_error(w, clipped) < 0.9 * quantization_error(w, plain)
    assert (clipped.scale <= plain.scale + 1e-9).all()


def test_mse_clipping_fake_quantize_and_bad_value():
    x = torch.randn(4, 64, requires_grad=True)
    y = quant.fake_quantize(x, bits=3, granularity="per_channel", clipping="mse")
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    with pytest.raises(ValueError, match="clipping"):
        quantize(torch.randn(4), clipping="best")


# ---------------------------------------------------------------- the compiled fast path
def test_fast_path_gives_identical_codes_and_scales(monkeypatch):
    """Large tensors take a torch.compile'd path; it must agree exactly with the eager recipe."""
    monkeypatch.setattr(quant.fast_path, "min_numel", 1)
    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(3)) * 3
    for kwargs in (dict(bits=8, symmetric=True, granularity="per_channel"),
                   dict(bits=4, granularity="per_group", group_size=128),
                   dict(bits=2, granularity="per_tensor")):
        quant.fast_path.enabled = True
        fast = quantize(w, **kwargs)
        assert quant.fast_path.error is None, quant.fast_path.error
        quant.fast_path.enabled = False
        eager = quantize(w, **kwargs)
        quant.fast_path.enabled = True
        assert torch.equal(fast.data, eager.data) and torch.equal(fast.scale, eager.scale)
        assert torch.equal(fast.zero_point, eager.zero_point)
    with pytest.raises(ValueError, match="NaN"):
        quantize(torch.tensor([1.0, float("nan")] * 64))
