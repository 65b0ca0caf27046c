"""Exercises of notebook 10: the reference passes, a plausible mistake fails, the lesson's numbers hold."""
import pytest

from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb10_when_is_it_faster as nb10
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel."""
    reset_attempts()


NB10 = exercises_in(nb10)


def test_registered():
    assert [e.id for e in NB10] == ["10.predict_ms", "10.int8_stops_winning"]
    assert {e.id for e in list_exercises("10")} == {e.id for e in NB10}


def _first_in_given_order(sizes, int8_ms, bf16_ms):      # assumes the lists are sorted
    return next((b for b, i, f in zip(sizes, int8_ms, bf16_ms) if i >= f), None)


def _strictly_slower(sizes, int8_ms, bf16_ms):           # a tie counted as a win
    return next((b for b, i, f in sorted(zip(sizes, int8_ms, bf16_ms)) if i > f), None)


def _last_win(sizes, int8_ms, bf16_ms):                  # the last size where int8 still wins
    wins = [b for b, i, f in sorted(zip(sizes, int8_ms, bf16_ms)) if i < f]
    return wins[-1] if wins else None


WRONG = {
    "10.predict_ms": [
        lambda n, bits, bw: n * bits / (bw * 1e9) * 1e3,          # bits, not bytes
        lambda n, bits, bw: n * bits // 8 / (bw * 1e9) * 1e3,     # integer division drops sub-byte sizes
        lambda n, bits, bw: n * bits / 8 / (bw * 2 ** 30) * 1e3,  # GiB instead of GB
        lambda n, bits, bw: n * bits / 8 / (bw * 1e9),            # seconds, not milliseconds
    ],
    "10.int8_stops_winning": [_first_in_given_order, _strictly_slower, _last_win],
}


@pytest.mark.parametrize("exercise_id,wrong", [(k, w) for k, ws in WRONG.items() for w in ws])
def test_plausible_mistake_fails_with_expected_vs_got(exercise_id, wrong):
    r = evaluate(exercise_id, wrong)
    assert r.status == "failed", r.message
    assert "expected" in r.message


def test_returning_an_index_instead_of_a_batch_size_fails():
    def index(sizes, int8_ms, bf16_ms):
        order = sorted(range(len(sizes)), key=sizes.__getitem__)
        return next((k for k in order if int8_ms[k] >= bf16_ms[k]), None)
    assert evaluate("10.int8_stops_winning", index).status == "failed"


def test_hints_nudge_first():
    for ex in NB10:
        assert len(ex.hints) == 2
        assert "bits / 8" not in ex.hints[0] and ">=" not in ex.hints[0]


def test_values_of_the_lesson():
    assert nb10.predict_ms(4096 * 4096, 32, 20.0) == pytest.approx(3.3554432)        # one fp32 layer
    assert nb10.predict_ms(7_000_000_000, 4, 320.0) == pytest.approx(10.9375)        # 7B int4 on a T4
    assert nb10.predict_ms(7_000_000_000, 16, 320.0) == pytest.approx(43.75)
    assert nb10.int8_stops_winning([1, 4, 16, 64], [5.0, 9.0, 12.0, 40.0], [10.0, 9.0, 11.0, 20.0]) == 4
    assert nb10.int8_stops_winning([1, 4], [1.0, 2.0], [3.0, 4.0]) is None
    assert nb10.int8_stops_winning([], [], []) is None


def test_cases_cover_the_edges():
    stops = get_exercise("10.int8_stops_winning").cases()
    answers = [nb10.int8_stops_winning(*case) for case in stops]
    assert None in answers and 1 in answers                      # never stops; stops at once
    assert any(list(case[0]) != sorted(case[0]) for case in stops)   # an unsorted case
    assert any(i == f for case in stops for i, f in zip(case[1], case[2]))   # a tie
    predict = get_exercise("10.predict_ms").cases()
    assert any(n * bits % 8 for n, bits, _ in predict)           # a size that is not whole bytes
