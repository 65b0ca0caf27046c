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
IDS = ["04.perplexity_from_losses", "04.bytes_for_model", "04.choose_group_size", "04.keep_in_high_precision",
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


# --------------------------------------------------------------------------- choose_group_size
@pytest.mark.parametrize("wrong", [
    lambda n, bits, gb, c: max(g for g in c if n * bits / 8 + n / g * 4 <= gb * 1e9),   # the largest that fits
    lambda n, bits, gb, c: next((g for g in c if n * bits / 8 + n / g * 4 <= gb * 1e9), None),  # unsorted
    lambda n, bits, gb, c: next((g for g in sorted(c) if n * bits / 8 <= gb * 1e9), None),      # forgets the scales
])
def test_group_size_wrong_answers_fail(wrong):
    r = evaluate("04.choose_group_size", wrong)
    assert r.status in ("failed", "error"), r.message


def test_group_size_may_use_the_learners_bytes_for_model():
    answer = lambda n, bits, gb, c: next((g for g in sorted(c) if nb04.bytes_for_model(n, bits, g) <= gb * 1e9), None)  # noqa: E731
    assert evaluate("04.choose_group_size", answer).passed


# --------------------------------------------------------------------------- keep_in_high_precision
@pytest.mark.parametrize("wrong", [
    lambda names, ppls, base, m: [n for n, p in zip(names, ppls) if (p - base) / base > m],  # not sorted
    lambda names, ppls, base, m: sorted([n for n, p in zip(names, ppls) if (p - base) / base >= m],
                                        key=lambda n: -ppls[names.index(n)]),                # >= instead of >
    lambda names, ppls, base, m: sorted([n for n, p in zip(names, ppls) if p - base > m],
                                        key=lambda n: -ppls[names.index(n)]),                # absolute increase
])
def test_keep_wrong_answers_fail(wrong):
    r = evaluate("04.keep_in_high_precision", wrong)
    assert r.status in ("failed", "error"), r.message


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
