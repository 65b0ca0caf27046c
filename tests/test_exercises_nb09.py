"""Notebook 09's exercises: each reference passes, a plausible mistake fails clearly, a stub is 'not done'."""

import pytest
import torch

from coursekit.exercises import evaluate, get_exercise, reset_attempts
from coursekit.exercises import nb09_quantization_aware_training as nb09
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


IDS = [e.id for e in exercises_in(nb09)]


def _plain_round(x):                       # the mistake ste_grad exists to catch
    return x.round()


def _grad_through(rounding):
    def ste_grad(x, upstream):
        x = x.clone().requires_grad_(True)
        (rounding(x) ** 2 * upstream).sum().backward()
        return x.grad
    return ste_grad


def _fake_quant_no_clamp_scale_by_range(x, bits):   # uses 2^bits - 1 levels over [min, max]: not symmetric
    scale = (x.max() - x.min()) / (2 ** bits - 1)
    if scale == 0:
        return x.clone()
    return torch.round(x / scale) * scale


def _fake_quant_nan_on_zeros(x, bits):
    scale = x.abs().max() / (2 ** (bits - 1) - 1)
    return torch.clamp(torch.round(x / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * scale


WRONG = {
    "09.fake_quant_symmetric": [_fake_quant_no_clamp_scale_by_range, _fake_quant_nan_on_zeros,
                                lambda x, bits: torch.round(x / (x.abs().max() / 2 ** (bits - 1)))],  # codes, not values
    "09.ste_round": [lambda x: x.floor(), lambda x: x],
    "09.ste_grad": [_grad_through(_plain_round), lambda x, upstream: torch.ones_like(x),
                    lambda x, upstream: upstream,                      # the shortcut: no longer passes
                    _grad_through(lambda x: x)],                       # no rounding at all: 2 x upstream
    "09.ema_absmax": [lambda m, mom: torch.tensor([(mom * a + (1 - mom) * b) for a, b in zip(m, m)]),
                      lambda m, mom: m.cumsum(0) / torch.arange(1, len(m) + 1),          # a plain running mean
                      lambda m, mom: torch.cummax(m, 0).values],                        # the running max
}


def test_every_exercise_is_registered_and_has_a_wrong_answer():
    assert IDS == ["09.fake_quant_symmetric", "09.ste_round", "09.ste_grad", "09.what_the_controls_show",
                   "09.ema_absmax"]
    assert set(WRONG) == set(IDS) - {"09.what_the_controls_show"}     # multiple choice: tested below
    for ex_id in IDS:
        assert get_exercise(ex_id).name == ex_id.split(".", 1)[1]


@pytest.mark.parametrize("ex_id,i", [(k, i) for k, v in WRONG.items() for i in range(len(v))])
def test_plausible_mistake_fails_with_expected_and_got(ex_id, i):
    r = evaluate(ex_id, WRONG[ex_id][i])
    assert r.status == "failed", r.message
    assert ("expected" in r.message or "NaN" in r.message) and "Hint:" in r.message


def test_ste_round_has_round_values_and_identity_gradient():
    x = torch.tensor([-1.6, -0.4, 0.3, 2.2], requires_grad=True)
    y = nb09.ste_round(x)
    y.sum().backward()
    assert torch.equal(y.detach(), x.detach().round())
    assert torch.equal(x.grad, torch.ones(4))


def test_fake_quant_symmetric_agrees_with_coursekit():
    from coursekit.quant import fake_quantize
    x = torch.randn(7, 9, generator=torch.Generator().manual_seed(1))
    for bits in (2, 3, 4, 8):
        ours = nb09.fake_quant_symmetric(x, bits)
        assert torch.allclose(ours, fake_quantize(x, bits, symmetric=True), atol=1e-6)
        assert ours.unique().numel() <= 2 ** bits


def test_what_the_controls_show_never_reveals_the_answer():
    for wrong in ("a", "c", "d"):
        r = evaluate("09.what_the_controls_show", lambda w=wrong: w)
        assert r.status == "failed" and "'b'" not in r.message, r.message
    assert evaluate("09.what_the_controls_show", "b").passed
