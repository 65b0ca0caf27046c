"""Exercises of notebook 04 (quantizing a language model).

For every exercise: the reference passes, plausible wrong answers fail with a message that says what
was expected and what came back, and an untouched stub is reported as "not done yet". The size
references agree with coursekit.memory, which the notebook uses after the exercises.
"""

import json
import math
import pathlib

import pytest
import torch

from coursekit import memory
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb04_llm_quantization as nb04


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "04_llm_quantization.ipynb"
IDS = ["04.perplexity_from_losses", "04.bytes_for_model", "04.fits_on_gpu", "04.relative_increase",
       "04.pick_precision"]


# --------------------------------------------------------------------------- every exercise
def test_all_exercises_are_registered():
    assert sorted(e.id for e in list_exercises("04")) == sorted(IDS)


def _assert_fails(exercise_id, answer, *words):
    r = evaluate(exercise_id, answer)
    assert r.status in ("failed", "error"), r.message
    assert "expected" in r.message or r.status == "error", r.message
    for w in words:
        assert w in r.message, r.message
    return r


# --------------------------------------------------------------------------- perplexity_from_losses
@pytest.mark.parametrize("wrong", [
    lambda losses: losses.exp().mean().item(),              # mean of exp, not exp of mean
    lambda losses: math.exp(losses.sum().item()),           # sum instead of mean
    lambda losses: 2 ** losses.mean().item(),               # base 2 (bits), not nats
    lambda losses: losses.mean().item(),                    # forgot the exp
])
def test_perplexity_wrong_answers_fail(wrong):
    _assert_fails("04.perplexity_from_losses", wrong, "got")


def test_perplexity_of_uniform_guessing_is_the_vocabulary_size():
    losses = torch.full((7,), math.log(4096.0), dtype=torch.float64)
    assert nb04.perplexity_from_losses(losses) == pytest.approx(4096.0)


# --------------------------------------------------------------------------- bytes_for_model
@pytest.mark.parametrize("wrong", [
    lambda n, bits, gs: n * bits / 8,                                        # scales forgotten
    lambda n, bits, gs: n * bits / 8 + (n / gs * 2 if gs else 0),           # only a scale per group
    lambda n, bits, gs: n * bits + (n / gs * 4 if gs else 0),               # bits, not bytes
])
def test_bytes_wrong_answers_fail(wrong):
    _assert_fails("04.bytes_for_model", wrong, "got")


def test_bytes_without_groups_agrees_with_coursekit_memory():
    for n, bits in [(7_000_000_000, 16), (1_000_000_000, 4), (135_000_000, 8)]:
        assert nb04.bytes_for_model(n, bits, None) == pytest.approx(memory.nbytes_for(n, bits))


# --------------------------------------------------------------------------- fits_on_gpu
@pytest.mark.parametrize("wrong", [
    lambda n, bits, gb: n * bits / 8 <= gb * 1e9,                 # no headroom
    lambda n, bits, gb: n * bits / 8 <= 0.8 * gb * 2 ** 30,       # GiB instead of GB
    lambda n, bits, gb: n * bits <= 0.8 * gb * 1e9,               # bits, not bytes
])
def test_fits_wrong_answers_fail(wrong):
    _assert_fails("04.fits_on_gpu", wrong, "expected")


def test_fits_wants_a_python_bool():
    r = evaluate("04.fits_on_gpu", lambda n, bits, gb: torch.tensor(n * bits / 8 <= 0.8 * gb * 1e9))
    assert r.status == "failed"


# --------------------------------------------------------------------------- relative_increase
@pytest.mark.parametrize("wrong", [
    lambda base, q: 100 * (q - base) / base,     # percent
    lambda base, q: q / base,                    # ratio, not increase
    lambda base, q: (q - base) / q,              # divided by the wrong one
    lambda base, q: abs(q - base) / base,        # loses the sign
])
def test_increase_wrong_answers_fail(wrong):
    _assert_fails("04.relative_increase", wrong, "got")


# --------------------------------------------------------------------------- pick_precision
def _argmin_size(ppls, sizes, max_increase):
    return int(torch.argmin(sizes))


def _lowest_ppl(ppls, sizes, max_increase):
    return int(torch.argmin(ppls))


def _strict_budget(ppls, sizes, max_increase):
    ok = [i for i in range(len(ppls)) if ppls[i] < ppls[0] * (1 + max_increase) or i == 0]
    return min(ok, key=lambda i: (sizes[i].item(), ppls[i].item()))


def _first_on_size_tie(ppls, sizes, max_increase):
    ok = [i for i in range(len(ppls)) if ppls[i] <= ppls[0] * (1 + max_increase)]
    return min(ok, key=lambda i: sizes[i].item())


def _vectorized(ppls, sizes, max_increase):
    ok = ppls <= ppls[0] * (1 + max_increase)
    masked = torch.where(ok, sizes.double(), torch.tensor(float("inf"), dtype=torch.float64))
    smallest = masked == masked.min()
    return int(torch.argmin(torch.where(smallest, ppls.double(), torch.tensor(float("inf"),
                                                                               dtype=torch.float64))))


@pytest.mark.parametrize("wrong", [_argmin_size, _lowest_ppl, _strict_budget, _first_on_size_tie])
def test_pick_wrong_answers_fail(wrong):
    _assert_fails("04.pick_precision", wrong, "expected")


def test_pick_accepts_a_vectorized_solution():
    r = evaluate("04.pick_precision", _vectorized)
    assert r.passed, r.message
