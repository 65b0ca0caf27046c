"""Exercises of notebooks 05 (symmetric vs asymmetric) and 06 (granularity).

For every exercise: the reference passes, plausible wrong answers fail with a message that says what
was expected and what came back, and an untouched stub is reported as "not done yet". The references
also agree with coursekit, which the notebooks use for everything after the exercises.
"""

import json
import pathlib

import pytest
import torch

from coursekit import quant
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb05_symmetric_vs_asymmetric as nb05
from coursekit.exercises import nb06_granularity as nb06


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
IDS = ["05.symmetric_scale", "05.symmetric_quantize", "05.fraction_of_range_used", "05.choose_mode",
       "06.per_channel_scales", "06.per_group_dequantize", "06.percentile_scale", "06.w8a32_linear",
       "06.bits_per_weight"]


# --------------------------------------------------------------------------- every exercise
def test_all_exercises_are_registered():
    assert sorted(e.id for e in list_exercises("05") + list_exercises("06")) == sorted(IDS)


def _verdict(exercise_id, answer):
    r = evaluate(exercise_id, answer)
    assert r.status in ("failed", "error"), f"{exercise_id}: a wrong answer was accepted ({r.message})"
    assert r.message.startswith("❌")
    if r.status == "failed":
        assert "expected" in r.message, r.message
    return r.message


# --------------------------------------------------------------------------- 05
def test_symmetric_scale_wrong_answers():
    msg = _verdict("05.symmetric_scale", lambda x, bits: x.abs().max().item() / (2 ** bits - 1))
    assert "got" in msg
    msg = _verdict("05.symmetric_scale", lambda x, bits: x.abs().max().item() / (2 ** (bits - 1) - 1))
    assert "expected 1" in msg                        # the all-zero case: 0 would divide by zero later


def test_symmetric_quantize_wrong_answers():
    def truncates(x, bits):                           # .to(int8) truncates instead of rounding
        s = nb05.symmetric_scale(x, bits)
        return (x / s).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1).to(torch.int8)

    def float_codes(x, bits):
        return nb05.symmetric_quantize(x, bits).float()

    assert "values differ" in _verdict("05.symmetric_quantize", truncates)
    assert "dtype" in _verdict("05.symmetric_quantize", float_codes)


def test_symmetric_quantize_matches_coursekit():
    for x, bits in nb05._quantize_cases():
        assert torch.equal(nb05.symmetric_quantize(x, bits), quant.quantize(x, bits=bits, symmetric=True).data)


def test_fraction_of_range_used_wrong_answers():
    def overflows(codes, bits):                       # int8 arithmetic: 127 - (-128) wraps around
        return float(codes.max() - codes.min() + 1) / 2 ** bits

    def counts_distinct_codes(codes, bits):
        return codes.unique().numel() / 2 ** bits

    assert "got -0.5, expected 0.5" in _verdict("05.fraction_of_range_used", overflows)  # 127 - 0 + 1 wraps
    _verdict("05.fraction_of_range_used", counts_distinct_codes)
    _verdict("05.fraction_of_range_used", lambda codes, bits: (int(codes.max()) - int(codes.min())) / 2 ** bits)


def test_choose_mode_wrong_answers():
    def ties_go_asymmetric(x, bits):
        s = quant.quantization_error(x, quant.quantize(x, bits=bits, symmetric=True))
        a = quant.quantization_error(x, quant.quantize(x, bits=bits))
        return "asymmetric" if a <= s else "symmetric"

    assert "'symmetric'" in _verdict("05.choose_mode", lambda x, bits: "asymmetric")
    assert "'asymmetric'" in _verdict("05.choose_mode", lambda x, bits: "symmetric")
    _verdict("05.choose_mode", ties_go_asymmetric)
    _verdict("05.choose_mode", lambda x, bits: bool(x.min() < 0))


def test_choose_mode_cases_are_not_near_ties():
    """A learner who computes the MSE in float32 must get the same verdict: exact ties or a clear gap."""
    for x, bits in nb05._mode_cases():
        s = quant.quantization_error(x, quant.quantize(x, bits=bits, symmetric=True))
        a = quant.quantization_error(x, quant.quantize(x, bits=bits))
        assert s == a or abs(s - a) > 0.2 * max(s, a)


def test_symmetric_scale_matches_coursekit():
    for x, bits in nb05._scale_cases():
        scale, zero_point = quant.choose_qparams(x, bits=bits, symmetric=True)
        assert scale.item() == pytest.approx(nb05.symmetric_scale(x, bits), rel=1e-6)
        assert zero_point.item() == 0


# --------------------------------------------------------------------------- 06
def test_per_channel_scales_wrong_answers():
    assert "shape" in _verdict("06.per_channel_scales", lambda w, bits: w.abs().amax(dim=0, keepdim=True) / (2 ** (bits - 1) - 1))
    assert "shape" in _verdict("06.per_channel_scales", lambda w, bits: w.abs().amax(dim=1) / (2 ** (bits - 1) - 1))
    msg = _verdict("06.per_channel_scales", lambda w, bits: w.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1))
    assert "expected 1" in msg                        # the all-zero row


def test_per_channel_scales_match_coursekit():
    for w, bits in nb06._scale_cases():
        scale, _ = quant.choose_qparams(w, bits=bits, symmetric=True, granularity="per_channel", axis=0)
        assert torch.allclose(nb06.per_channel_scales(w, bits), scale)


def test_per_group_dequantize_wrong_answers():
    def groups_across_rows(codes, scales, group_size):    # groups taken down the columns
        blocks = codes.reshape(group_size, -1).float()
        return (blocks * scales.reshape(1, -1)).reshape(codes.shape)

    def tiles_scales(codes, scales, group_size):          # repeat instead of repeat_interleave
        return codes.float() * scales.repeat(*([1] * (scales.dim() - 1)), group_size)

    _verdict("06.per_group_dequantize", groups_across_rows)
    assert "values differ" in _verdict("06.per_group_dequantize", tiles_scales)
    assert "dtype" in _verdict("06.per_group_dequantize",
                               lambda c, s, g: nb06.per_group_dequantize(c, s, g).double())


def test_per_group_dequantize_matches_coursekit():
    for x, bits, group_size in [(torch.randn(6, 64), 4, 32), (torch.randn(2, 3, 8), 8, 4)]:
        q = quant.quantize(x, bits=bits, symmetric=True, granularity="per_group", group_size=group_size)
        assert torch.equal(nb06.per_group_dequantize(q.data, q.scale, group_size), q.dequantize())


def test_percentile_scale_wrong_answers():
    _verdict("06.percentile_scale", lambda x, bits, p: x.abs().max().item() / (2 ** (bits - 1) - 1))  # min/max
    _verdict("06.percentile_scale", lambda x, bits, p: torch.quantile(x.float().abs().flatten(), p).item()
             / (2 ** (bits - 1) - 1))                                                              # p, not p/100
    _verdict("06.percentile_scale", lambda x, bits, p: torch.quantile(x.float().flatten(), p / 100).item()
             / (2 ** (bits - 1) - 1))                                                              # forgets |x|


def test_percentile_scale_at_100_is_the_minmax_scale():
    x = torch.randn(16, 32)
    q = quant.quantize(x, bits=4, symmetric=True)
    assert nb06.percentile_scale(x, 4, 100.0) == pytest.approx(q.scale.item())


def test_w8a32_linear_wrong_answers():
    def forgets_scales(x, codes, scales, bias):
        y = x @ codes.float().T
        return y if bias is None else y + bias

    def forgets_transpose(x, codes, scales, bias):
        y = x @ (codes.float() * scales)
        return y if bias is None else y + bias

    def always_adds_bias(x, codes, scales, bias):
        return x @ (codes.float() * scales).T + bias

    assert "values differ" in _verdict("06.w8a32_linear", forgets_scales)
    msg = _verdict("06.w8a32_linear", forgets_transpose)   # raises on the first, non-square case
    assert "RuntimeError" in msg or "values differ" in msg
    assert "TypeError" in _verdict("06.w8a32_linear", always_adds_bias)


def test_w8a32_linear_is_close_to_float32():
    torch.manual_seed(0)
    w, x, b = torch.randn(16, 32) * 0.05, torch.randn(4, 32), torch.randn(16)
    q = quant.quantize(w, bits=8, symmetric=True, granularity="per_channel", axis=0)
    y, y_q = x @ w.T + b, nb06.w8a32_linear(x, q.data, q.scale, b)
    assert ((y_q - y).norm() / y.norm()).item() < 0.02


def test_bits_per_weight_wrong_answers():
    def floor_groups(in_features, bits, group_size):       # forgets the short last group
        groups = 1 if group_size is None else in_features // group_size
        return (bits * in_features + groups * 40) / in_features

    def scale_only(in_features, bits, group_size):         # forgets the zero points
        groups = 1 if group_size is None else -(-in_features // group_size)
        return (bits * in_features + groups * 32) / in_features

    def per_weight_formula(in_features, bits, group_size):  # bits + 40 / group_size, as if it divided
        return bits + 40 / (in_features if group_size is None else group_size)

    for wrong in (floor_groups, scale_only, per_weight_formula):
        assert "expected" in _verdict("06.bits_per_weight", wrong)


def test_bits_per_weight_matches_the_stored_layer():
    """The reference counts what a PackedLinear stores: packed codes, float32 scales, int8 zero points."""
    from coursekit import memory
    from coursekit.layers import PackedLinear
    for in_features, bits, group_size in nb06._bits_per_weight_cases():
        if bits not in PackedLinear.SUPPORTED_BITS or in_features * bits % 8:
            continue
        rows = 8
        layer = PackedLinear(in_features, rows, bias=False, bits=bits,
                             group_size=in_features if group_size is None else group_size)
        measured = 8 * memory.model_nbytes(layer) / (rows * in_features)
        assert measured == pytest.approx(nb06.bits_per_weight(in_features, bits, group_size))
    assert nb06.bits_per_weight(576, 4, 128) == pytest.approx((4 * 576 + 5 * 40) / 576)


# --------------------------------------------------------------------------- the figure notebook 06 adds
def test_plot_heatmaps_shares_one_colour_scale():
    from coursekit import plots
    fig = plots.plot_heatmaps({"a": torch.rand(3, 4), "b": 2 * torch.rand(3, 4)}, title="t")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and len({im.get_clim() for im in images}) == 1
    with pytest.raises(ValueError, match="empty"):
        plots.plot_heatmaps({})
