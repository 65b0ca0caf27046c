"""Exercises of notebooks 07 and 08: the reference passes, a plausible mistake fails, a stub is "not done"."""
import pytest
import torch
import torch.nn.functional as F

from coursekit import packing

from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb07_build_an_8bit_quantizer as nb07
from coursekit.exercises import nb08_weight_packing as nb08
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel: a first failure shows hint level 1."""
    reset_attempts()


NB07, NB08 = exercises_in(nb07), exercises_in(nb08)
IDS = [e.id for e in NB07 + NB08]


def test_registered():
    assert {e.id for e in list_exercises("07")} == {e.id for e in NB07}
    assert {e.id for e in list_exercises("08")} == {e.id for e in NB08}
    assert 3 <= len(NB07) <= 6 and 3 <= len(NB08) <= 6


def _pack_high_first(codes):          # first code in the highest bits: the wrong end of the byte
    flat = codes.reshape(-1).to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 4))
    shifts = torch.tensor([6, 4, 2, 0], dtype=torch.uint8)
    return (flat.reshape(-1, 4) << shifts).sum(1, dtype=torch.uint8)


def _unpack_keeps_padding(packed, n):
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
    return ((packed.reshape(-1, 1) >> shifts) & 3).reshape(-1)


WRONG = {
    # forgot abs(): a row whose largest magnitude is negative gets the wrong scale
    "07.int8_scales": lambda w: w.amax(dim=1).clamp(min=1e-8) / 127,
    # per-tensor instead of per channel
    "07.int8_codes": lambda w, s: torch.round(w / s.max()).clamp(-128, 127).to(torch.int8),
    # the scale applied along the wrong axis (to the inputs rather than the outputs)
    "07.w8a16_forward": lambda x, q, s, b: F.linear(x, q.float() * s[:1, None], b),
    # forgot the scales
    "07.bytes_saved": lambda i, o: 3 * i * o,
    # cast to uint8 without the offset: -1 wraps around to 255
    "08.to_unsigned": lambda c, bits: c.to(torch.uint8),
    "08.pack_2bit": _pack_high_first,
    "08.unpack_2bit": _unpack_keeps_padding,
    # the high nibble first
    "08.unpack_int4": lambda p, n: (torch.stack((p >> 4, p & 0x0F), -1).reshape(-1)[:n].to(torch.int16) - 8).to(torch.int8),
}


@pytest.mark.parametrize("exercise_id", IDS)
def test_plausible_mistake_fails_with_expected_vs_got(exercise_id):
    r = evaluate(exercise_id, WRONG[exercise_id])
    assert r.status == "failed", r.message
    assert "expected" in r.message
    first, *later = get_exercise(exercise_id).hints       # a first failure: the nudge only
    assert first in r.message and not any(level in r.message for level in later)


def test_int8_codes_must_round_not_truncate():
    r = evaluate("07.int8_codes", lambda w, s: (w / s[:, None]).clamp(-128, 127).to(torch.int8))
    assert r.status == "failed"


def test_int8_codes_must_clamp():
    r = evaluate("07.int8_codes", lambda w, s: torch.round(w / s[:, None]).to(torch.int8))
    assert r.status == "failed"


def test_forward_without_bias_case_is_checked():
    def ignores_none(x, q, s, b):
        return F.linear(x, q.float()) * s + b     # TypeError when b is None
    r = evaluate("07.w8a16_forward", ignores_none)
    assert r.status == "error" and "TypeError" in r.message


def test_values_of_the_lesson():
    assert nb08.pack_2bit(torch.tensor([1, 0, 3, 2], dtype=torch.uint8)).tolist() == [177]
    assert nb08.unpack_2bit(torch.tensor([177], dtype=torch.uint8), 4).tolist() == [1, 0, 3, 2]
    assert nb07.bytes_saved(1, 1) == -1          # a 1x1 layer grows: the scale costs more than it saves
    codes = torch.tensor([-8, 7, -1], dtype=torch.int8)
    packed = packing.pack((codes.to(torch.int16) + 8).to(torch.uint8), 4)
    assert torch.equal(nb08.unpack_int4(packed, 3), codes)
