"""The exercises of notebooks 01 (data types) and 02 (model casting).

For each one: the reference passes, a plausible wrong answer fails with a message that says what
was expected, and a stub that still raises NotImplementedError is reported as "not done yet".
"""
import math

import pytest
import torch

from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


F = torch.nn.functional

# A plausible mistake per exercise, with a word the failure message must contain.
WRONG = {
    # 01: data types
    "01.signed_range": (lambda bits: (-(2 ** (bits - 1)), 2 ** (bits - 1)), "expected 127"),
    "01.twos_complement_bits": (lambda value, bits: format(abs(value), f"0{bits}b"), "expected '11010101'"),
    "01.decode_signed": (lambda bits: int(bits, 2), "expected -43"),
    "01.weight_memory_gb": (lambda n, bits: n * bits / 8 / 2 ** 30, "expected 28"),
    "01.to_fp16": (lambda x: torch.tensor(x).bfloat16().item(), "expected 0.333252"),
    # 02: model casting
    "02.tensor_bytes": (lambda t: t.numel() * 4, "expected 64"),
    "02.mean_abs_diff": (lambda a, b: (a.float() - b.float()).mean().item(), "expected"),
    "02.mean_cosine": (lambda a, b: (a * b).sum(-1).mean().item(), "expected"),
    "02.perplexity_from_logits": (lambda logits, t: F.cross_entropy(logits.float(), t).item(), "expected 288"),
    "02.top1_agreement": (lambda a, b: (a.argmax(-1) == b.argmax(-1)).sum().item(), "expected 0.916667"),
}

IDS = sorted(WRONG)


def test_every_exercise_of_nb01_nb02_is_covered_here():
    assert sorted(e.id for e in list_exercises("01") + list_exercises("02")) == IDS


@pytest.mark.parametrize("exercise_id", IDS)
def test_plausible_wrong_answer_fails_with_expected_value(exercise_id):
    wrong, must_say = WRONG[exercise_id]
    result = evaluate(exercise_id, wrong)
    assert result.status == "failed", result.message
    assert "expected" in result.message and must_say in result.message, result.message
    assert "Hint:" in result.message


@pytest.mark.parametrize("exercise_id", IDS)
def test_passing_the_result_instead_of_the_function_is_explained(exercise_id):
    result = evaluate(exercise_id, 3)
    assert not result.passed and get_exercise(exercise_id).name in result.message


def test_integer_answers_are_exact_for_wide_integers():
    # The default relative tolerance (1e-4) would accept 2**31 for 2**31 - 1; the spec must not.
    def off_by_one_at_32(bits):
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (low, high + 1) if bits == 32 else (low, high)

    result = evaluate("01.signed_range", off_by_one_at_32)
    assert result.status == "failed" and "2147483647" in result.message


def test_fp16_edge_cases_are_in_the_hidden_cases():
    cases = [c[0] for c in get_exercise("01.to_fp16").cases()]
    expected = [get_exercise("01.to_fp16").reference(x) for x in cases]
    assert math.inf in expected and -math.inf in expected          # overflow
    assert 65504.0 in expected                                     # the largest finite value
    assert any(0 < v < torch.finfo(torch.float16).tiny for v in expected)   # a subnormal

    def flushes_subnormals(x):
        y = torch.tensor(x).half().item()
        return 0.0 if abs(y) < torch.finfo(torch.float16).tiny else y

    assert evaluate("01.to_fp16", flushes_subnormals).status == "failed"


def test_fp16_answer_may_be_a_tensor_or_go_through_float32():
    assert evaluate("01.to_fp16", lambda x: torch.tensor(x).half()).passed
    assert evaluate("01.to_fp16", lambda x: torch.tensor(x, dtype=torch.float32).half().item()).passed


def test_memory_answer_in_bytes_fails_with_units_hint():
    result = evaluate("01.weight_memory_gb", lambda n, bits: n * bits / 8)
    assert result.status == "failed" and "10^9" in result.message


def test_low_precision_arithmetic_is_caught_where_it_matters():
    # Computing the perplexity of bf16 logits in bf16 loses about a percent: must fail.
    in_bf16 = lambda logits, t: math.exp(F.cross_entropy(logits, t).float().item())  # noqa: E731
    assert evaluate("02.perplexity_from_logits", in_bf16).status == "failed"
    # The mean |diff| with the inputs left in mixed dtypes still works: torch promotes to float32.
    assert evaluate("02.mean_abs_diff", lambda a, b: (a - b).abs().mean()).passed


def test_equivalent_formulations_pass():
    def cosine_by_hand(a, b):
        a, b = a.float(), b.float()
        return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean().item()

    def ppl_by_hand(logits, targets):
        logp = torch.log_softmax(logits.float(), dim=-1)
        return torch.exp(-logp[torch.arange(len(targets)), targets].mean())

    assert evaluate("02.mean_cosine", cosine_by_hand).passed
    assert evaluate("02.perplexity_from_logits", ppl_by_hand).passed
    assert evaluate("02.tensor_bytes", lambda t: t.untyped_storage().nbytes()).passed
    assert evaluate("01.decode_signed", lambda s: int(s, 2) - (int(s[0]) << len(s))).passed
