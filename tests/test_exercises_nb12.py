"""Exercises of notebook 12: the reference passes, a plausible mistake fails with expected vs got."""
import math

import pytest
import torch

import coursekit.formats as F
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb12_number_formats as nb12
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    reset_attempts()


NB12 = exercises_in(nb12)
IDS = [e.id for e in NB12]


def test_registered():
    assert {e.id for e in list_exercises("12")} == set(IDS) == {
        "12.decode_e2m1", "12.mx_shared_exponent", "12.nf4_bits_per_weight"}


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    ex = get_exercise(exercise_id)
    assert evaluate(exercise_id, ex.reference).status == "passed"


def _e2m1_bias_0(code):            # forgot the bias: 2**e instead of 2**(e-1)
    e, m = (code >> 1) & 3, code & 1
    v = 2.0 ** e * (1 + m / 2) if e else m / 2
    return -v if code & 8 else v


WRONG = {
    "12.decode_e2m1": _e2m1_bias_0,
    # forgot abs(): a block whose largest magnitude is negative gets the wrong exponent
    "12.mx_shared_exponent": lambda b: 0 if b.max() <= 0 else math.floor(math.log2(b.max().item())) - 2 + 127,
    # forgot the second-level scale of double quantization
    "12.nf4_bits_per_weight": lambda bs, dq: 4 + (8 if dq else 32) / bs,
}


@pytest.mark.parametrize("exercise_id", IDS)
def test_plausible_mistake_fails_with_expected_vs_got(exercise_id):
    r = evaluate(exercise_id, WRONG[exercise_id])
    assert r.status == "failed", r.message
    assert "expected" in r.message
    first, *later = get_exercise(exercise_id).hints
    assert first in r.message and not any(level in r.message for level in later)


def test_references_agree_with_coursekit_formats():
    codes = torch.arange(16, dtype=torch.uint8)
    assert [nb12.decode_e2m1(c) for c in range(16)] == F.e2m1_decode(codes).tolist()
    for (block,) in nb12._mx_cases():
        assert nb12.mx_shared_exponent(block) == int(F.e8m0_from_amax(block.abs().max().reshape(1)))
    assert nb12.nf4_bits_per_weight(64, False) == F.bits_per_weight("nf4")
    assert round(nb12.nf4_bits_per_weight(64, True), 3) == 4.127          # QLoRA, section 3


def test_decode_e2m1_asks_for_the_rule_not_the_printed_table():
    """The notebook prints all 16 E2M1 codes; the hidden cases also decode FP6 E2M3 and E3M2."""
    table = dict(enumerate(F.e2m1_decode(torch.arange(16, dtype=torch.uint8)).tolist()))
    r = evaluate("12.decode_e2m1", lambda code, exponent_bits=2, mantissa_bits=1: table[code % 16])
    assert r.status == "failed", r.message
    # OCP MX v1.0, §5.3.2: the largest normals and the smallest subnormals of the FP6 formats
    assert (nb12.decode_e2m1(31, 3, 2), nb12.decode_e2m1(31, 2, 3)) == (28.0, 7.5)
    assert (nb12.decode_e2m1(1, 3, 2), nb12.decode_e2m1(1, 2, 3)) == (0.0625, 0.125)
    assert nb12.decode_e2m1(63, 3, 2) == -28.0
