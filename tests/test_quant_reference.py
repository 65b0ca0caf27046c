"""coursekit.quant against a plain reference, bit for bit.

The reference below quantizes one block at a time with the formulas of notebook 03, in float32,
with Python loops instead of the block view. quant.py must give exactly the same codes, scales,
zero points and values (and fake_quantize the same values, with the upstream gradient): a
refactoring of quant.py that changes a single bit of any of them fails here.
"""
import itertools

import pytest
import torch

from coursekit import quant

CLIP_FRACTIONS = [1.0 - 0.025 * i for i in range(21)]     # what clipping="mse" tries, 1.0 first


def reference_blocks(x, granularity, axis, group_size):
    """The blocks of x as 1-D tensors, numbered as quantize numbers them."""
    if granularity == "per_tensor":
        return [x.reshape(-1)]
    if granularity == "per_channel":
        return [x.select(axis, i).reshape(-1) for i in range(x.shape[axis])]
    return list(x.reshape(-1, group_size))


def reference_grid(lo, hi, bits, symmetric):
    """Scale and zero point of one block from its (clipped) min and max, as float32 scalars."""
    qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)        # 0 is always on the grid
    absmax = torch.maximum(-lo, hi)
    if symmetric:
        scale, zero = absmax / qmax, torch.tensor(0.0)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)
    if scale < torch.finfo(torch.float32).tiny:                        # an all-zero block
        scale, zero = (absmax if absmax > 0 else torch.tensor(1.0)), torch.tensor(0.0)
    return scale, zero


def reference_quantize(x, bits, symmetric, granularity, axis=0, group_size=None, clipping="minmax"):
    """[(codes, scale, zero point, dequantized values)] per block; mse tries every clipping fraction."""
    qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    out = []
    for block in reference_blocks(x, granularity, axis, group_size):
        values, best = block.float(), None
        for frac in (CLIP_FRACTIONS if clipping == "mse" else [1.0]):
            scale, zero = reference_grid(values.min() * frac, values.max() * frac, bits, symmetric)
            codes = torch.clamp(torch.round(values / scale) + zero, qmin, qmax)
            back = (codes - zero) * scale
            err = (back - values).pow(2).sum()
            if best is None or err < best[0]:
                best = (err, codes, scale, zero, back)
        out.append(best[1:])
    return out


def example(seed, shape=(6, 32)):
    """Gaussian values with a few outliers, an all-zero row and a constant row."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * (1 + 9 * (torch.rand(shape, generator=g) > 0.97))
    x[1] = 0.0
    x[2] = 0.75
    return x


GRANULARITIES = [("per_tensor", 0, None), ("per_channel", 0, None), ("per_channel", 1, None),
                 ("per_channel", -1, None), ("per_group", 0, 8), ("per_group", 0, 32)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("clipping", ["minmax", "mse"])
@pytest.mark.parametrize("granularity, axis, group_size", GRANULARITIES)
def test_quantize_equals_the_reference_bit_for_bit(granularity, axis, group_size, clipping, dtype):
    for seed, bits, symmetric in itertools.product(range(2), range(2, 9), (False, True)):
        x = example(seed).to(dtype)
        q = quant.quantize(x, bits, symmetric, granularity, axis, group_size, clipping=clipping)
        ref = reference_quantize(x, bits, symmetric, granularity, axis, group_size, clipping)
        b = q.blocking
        codes, values = b.to_blocks(q.data), b.to_blocks(q.dequantize())
        scale, zero = q.scale.reshape(-1), q.zero_point.reshape(-1)
        assert q.data.dtype == q.zero_point.dtype == torch.int8 and q.scale.dtype == torch.float32
        assert len(ref) == b.n_blocks
        for i, (ref_codes, ref_scale, ref_zero, ref_back) in enumerate(ref):
            where = (seed, bits, symmetric, i)
            assert torch.equal(codes[i], ref_codes.to(torch.int8)), where
            assert torch.equal(scale[i], ref_scale) and zero[i].item() == ref_zero.item(), where
            assert torch.equal(values[i], ref_back.to(dtype)), where
        s, z = quant.choose_qparams(x, bits, symmetric, granularity, axis, group_size, clipping=clipping)
        assert torch.equal(s, q.scale) and torch.equal(z, q.zero_point)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("granularity, axis, group_size", GRANULARITIES)
def test_fake_quantize_equals_the_reference_with_straight_through_gradient(granularity, axis, group_size,
                                                                           dtype):
    for bits, symmetric in itertools.product((2, 4, 8), (False, True)):
        x = example(7).to(dtype).requires_grad_()
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(bits)).to(dtype)
        y = quant.fake_quantize(x, bits, symmetric, granularity, axis, group_size)
        (y * upstream).sum().backward()
        ref = reference_quantize(x.detach(), bits, symmetric, granularity, axis, group_size)
        blocks = quant.Blocking.make(x.shape, granularity, axis, group_size).to_blocks(y.detach())
        for i, (_, _, _, ref_back) in enumerate(ref):
            assert torch.equal(blocks[i], ref_back.to(dtype)), (bits, symmetric, i)
        assert y.dtype == dtype and torch.equal(x.grad, upstream)


def test_the_steps_by_hand_equal_the_reference():
    x = example(3)
    for bits, symmetric in itertools.product(range(2, 9), (False, True)):
        scale, zero = quant.qparams_from_minmax(x.min(), x.max(), bits, symmetric)
        ref_scale, ref_zero = reference_grid(x.min(), x.max(), bits, symmetric)
        assert torch.equal(scale, ref_scale) and zero.item() == ref_zero.item()
        codes = quant.linear_quantize(x, scale, zero, bits)
        (ref_codes, _, _, ref_back), = reference_quantize(x, bits, symmetric, "per_tensor")
        assert torch.equal(codes, ref_codes.reshape(x.shape).to(torch.int8))
        assert torch.equal(quant.linear_dequantize(codes, scale, zero), ref_back.reshape(x.shape))
