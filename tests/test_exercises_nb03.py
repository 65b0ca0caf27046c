"""Notebook 03's exercises: references pass, plausible mistakes fail with a useful message."""

import pytest
import torch

from coursekit import quant
from coursekit.exercises import evaluate, list_exercises, reset_attempts
from coursekit.exercises import nb03_quantization_theory as nb03


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


IDS = ["03.linear_quantize", "03.linear_dequantize", "03.scale_and_zero_point", "03.mse"]


def test_the_notebook_has_these_exercises():
    assert [e.id for e in list_exercises("03")] == IDS


# --------------------------------------------------------------------------- agree with coursekit
def test_references_agree_with_coursekit_quant():
    for x, s, z in nb03._quantize_cases():
        assert torch.equal(nb03.linear_quantize(x, s, z), quant.linear_quantize(x, s, z))
    for codes, s, z in nb03._dequantize_cases():
        torch.testing.assert_close(nb03.linear_dequantize(codes, s, z), quant.linear_dequantize(codes, s, z))
    for (x,) in nb03._qparams_cases():
        scale, zero_point = quant.choose_qparams(x)
        s, z = nb03.scale_and_zero_point(x)
        assert s == pytest.approx(float(scale), rel=1e-6) and z == int(zero_point)
    for x, y in nb03._mse_cases():
        assert nb03.mse(x, y) == pytest.approx(quant.quantization_error(x, y), rel=1e-6, abs=1e-12)


def test_worked_example_numbers():
    s, z = nb03.scale_and_zero_point(torch.tensor(nb03.WORKED))
    assert round(s, 4) == 3.5788 and z == -77
    codes = nb03.linear_quantize(torch.tensor(nb03.WORKED), 3.5, -70)
    assert codes[0, 2] == 127  # 728.6 / 3.5 - 70 = 138: clipped


def test_hidden_cases_cover_the_edges():
    codes = [nb03.linear_quantize(*c) for c in nb03._quantize_cases()]
    assert any((c == 127).any() for c in codes) and any((c == -128).any() for c in codes)
    xs = [c[0] for c in nb03._qparams_cases()]
    assert any(bool((x > 0).all()) for x in xs) and any(bool((x < 0).all()) for x in xs)
    assert any(x.unique().numel() == 1 for x in xs)


# --------------------------------------------------------------------------- plausible mistakes
def _failed(exercise_id, answer, *words, got=True):
    r = evaluate(exercise_id, answer)
    assert r.status == "failed", r.message
    for w in ("expected",) + (("got",) if got else ()) + words:
        assert w in r.message, r.message
    assert "Hint:" in r.message
    return r


def test_quantize_without_clipping_fails():
    def no_clip(x, scale, zero_point):
        return (torch.round(x / scale) + zero_point).to(torch.int8)
    _failed("03.linear_quantize", no_clip, "hidden case 1", "expected 127")


def test_quantize_truncating_instead_of_rounding_fails():
    def truncate(x, scale, zero_point):
        return (torch.trunc(x / scale) + zero_point).clamp(-128, 127).to(torch.int8)
    _failed("03.linear_quantize", truncate)


def test_quantize_returning_floats_fails_on_dtype():
    def floats(x, scale, zero_point):
        return (torch.round(x / scale) + zero_point).clamp(-128, 127)
    _failed("03.linear_quantize", floats, "the dtype is torch.float32", got=False)


def test_quantize_with_the_zero_point_subtracted_fails():
    def minus(x, scale, zero_point):
        return (torch.round(x / scale) - zero_point).clamp(-128, 127).to(torch.int8)
    _failed("03.linear_quantize", minus)


def test_dequantize_in_int8_overflows_and_fails():
    def int8_math(codes, scale, zero_point):
        return scale * (codes - zero_point).float()
    _failed("03.linear_dequantize", int8_math)


def test_dequantize_adding_the_zero_point_fails():
    def plus(codes, scale, zero_point):
        return scale * (codes.float() + zero_point)
    _failed("03.linear_dequantize", plus)


def test_qparams_without_widening_fails_on_one_signed_tensors():
    def no_widening(x):
        r_min, r_max = x.min().item(), x.max().item()
        s = (r_max - r_min) / 255
        return s, max(-128, min(127, round(-128 - r_min / s)))
    r = _failed("03.scale_and_zero_point", no_widening)
    assert "hidden case 6" in r.message  # two-signed cases agree; [1.5, 2, 5] is the first that doesn't


def test_qparams_without_rounding_the_zero_point_fails():
    def unrounded(x):
        r_min, r_max = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
        s = (r_max - r_min) / 255
        return s, -128 - r_min / s
    _failed("03.scale_and_zero_point", unrounded, "whole number")


def test_qparams_dividing_by_256_fails():
    def off_by_one(x):
        r_min, r_max = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
        s = (r_max - r_min) / 256
        return s, round(-128 - r_min / s)
    _failed("03.scale_and_zero_point", off_by_one)


def test_qparams_accepts_tensors_for_scale_and_zero_point():
    def tensors(x):
        r_min, r_max = x.min().clamp(max=0), x.max().clamp(min=0)
        s = (r_max - r_min) / 255
        return s, torch.round(-128 - r_min / s).clamp(-128, 127).int()
    assert evaluate("03.scale_and_zero_point", tensors).passed


@pytest.mark.parametrize("wrong", [
    lambda x, y: (x - y).abs().mean().item(),          # mean absolute error
    lambda x, y: (x - y).pow(2).mean().sqrt().item(),  # root mean squared error
    lambda x, y: (x - y).mean().item() ** 2,           # squares the mean instead of the errors
    lambda x, y: (x - y).pow(2).sum().item(),          # sum, not mean
])
def test_mse_lookalikes_fail(wrong):
    _failed("03.mse", wrong)


def test_mse_returning_a_tensor_passes():
    assert evaluate("03.mse", lambda x, y: ((x - y) ** 2).mean()).passed
