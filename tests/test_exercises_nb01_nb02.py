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
    "01.smallest_signed_bits": (lambda v: max(abs(x) for x in v).bit_length() + 1, "expected 8"),
    "01.twos_complement_bits": (lambda value, bits: format(abs(value), f"0{bits}b"), "expected '11010101'"),
    "01.decode_signed": (lambda bits: int(bits, 2), "expected -43"),
    "01.widest_fitting_bits": (lambda n, gb: next((b for b in (32, 16, 8, 4) if n * b / 8 <= gb * 1e9), None),
                               "expected 8"),
    "01.to_fp16": (lambda x: torch.tensor(x).bfloat16().item(), "expected 0.333252"),
    "01.zero_bytes_per_gpu": (lambda n, gpus, stage: 16 * n / (gpus if stage else 1), "expected 3.85e+10"),
    # 02: model casting
    "02.most_changed": (lambda names, before, after: names[max(
        range(len(names)), key=lambda i: (after[i].float() - before[i].float()).norm().item())], "expected 'pair'"),
    "02.mean_cosine": (lambda a, b: (a * b).sum(-1).mean().item(), "expected"),
    "02.perplexity_from_logits": (lambda logits, t: F.cross_entropy(logits.float(), t).item(), "expected 288"),
    "02.top1_agreement": (lambda a, b: (a.argmax(-1) == b.argmax(-1)).sum().item(), "expected 0.916667"),
}

IDS = sorted(WRONG)


def test_every_exercise_of_nb01_nb02_is_covered_here():
    # 02.which_route is multiple choice: its wrong answers are tested below, without "expected"
    assert sorted(e.id for e in list_exercises("01") + list_exercises("02")) == sorted(IDS + ["02.which_route"])


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
    # An answer one bit off must fail at every width, 64 bits included (integers compare exactly).
    result = evaluate("01.smallest_signed_bits", lambda values: off_by_one(values))
    assert result.status == "failed" and "got 9, expected 8" in result.message       # [-128]


def off_by_one(values):
    """Forgets that the negative side is one longer: -128 would need 9 bits."""
    m = max(max(values), -min(values))
    bits = 1
    while 2 ** (bits - 1) - 1 < m:
        bits += 1
    return bits


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


def test_fits_answer_without_the_80_percent_rule_fails_with_the_rule_in_the_hint():
    result = evaluate("01.widest_fitting_bits", lambda n, gb: next((b for b in (32, 16, 8, 4)
                                                                   if n * b / 8 <= gb * 1e9), None))
    assert result.status == "failed" and "80 %" in result.message


def test_which_route_never_reveals_the_right_letter():
    for wrong in ("a", "c", "d"):
        result = evaluate("02.which_route", lambda w=wrong: w)
        assert result.status == "failed" and "'b'" not in result.message, result.message
    result = evaluate("02.which_route", lambda: "B")
    assert result.status == "failed" and "one of 'a', 'b', 'c', 'd'" in result.message


def test_low_precision_arithmetic_is_caught_where_it_matters():
    # Computing the perplexity of bf16 logits in bf16 loses about a percent: must fail.
    in_bf16 = lambda logits, t: math.exp(F.cross_entropy(logits, t).float().item())  # noqa: E731
    assert evaluate("02.perplexity_from_logits", in_bf16).status == "failed"
    # Relative errors with the inputs left in mixed dtypes still work: torch promotes to float32.
    assert evaluate("02.most_changed", lambda names, before, after: names[max(
        range(len(names)), key=lambda i: ((after[i] - before[i]).norm() / before[i].norm()).item())]).passed


def test_equivalent_formulations_pass():
    def cosine_by_hand(a, b):
        a, b = a.float(), b.float()
        return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean().item()

    def ppl_by_hand(logits, targets):
        logp = torch.log_softmax(logits.float(), dim=-1)
        return torch.exp(-logp[torch.arange(len(targets)), targets].mean())

    assert evaluate("02.mean_cosine", cosine_by_hand).passed
    assert evaluate("02.perplexity_from_logits", ppl_by_hand).passed
    assert evaluate("01.smallest_signed_bits", lambda v: max(max(max(v), 0).bit_length(), max(-min(v) - 1, 0).bit_length()) + 1).passed
    assert evaluate("01.decode_signed", lambda s: int(s, 2) - (int(s[0]) << len(s))).passed
