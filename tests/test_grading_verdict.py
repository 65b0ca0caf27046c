"""One verdict: `check()` in a notebook and the grader in its sandbox agree on the same answers.

Three submissions answer real course exercises in every way a learner can: correctly, wrongly
(on every case, or on some), by raising (on every case, or on one), with the stub's
NotImplementedError, with no answer (None, ...) and with something that is not a function. The
grader grades them in sandboxed kernels; `evaluate` (what `check` prints) judges the same cells
executed here. Status and points must be the same for every exercise, and where the wording does
not depend on the reader, so must the sentence.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from coursekit.exercises import evaluate, get_exercise, list_exercises
from coursekit.exercises.outcome import Handed, Kind, Outcome
from coursekit.exercises.verdict import Voice, judge
from coursekit.grading import GradeOptions, grade_batch

SUBMISSIONS = {
    "01_answers": [
        "smallest_signed_bits = 8               # the result, not the function",
        "twos_complement_bits = None             # no answer yet",
        "def decode_signed(bitstring):\n"
        "    value = int(bitstring, 2)\n"
        "    return value - 2 ** len(bitstring) if bitstring[0] == '1' else value",
        "def widest_fitting_bits(n_params, gpu_gb):   # forgets the 80 % rule\n"
        "    return next((b for b in (32, 16, 8, 4) if n_params * b / 8 <= gpu_gb * 1e9), None)",
        "to_fp16 = ...",
    ],
    "03_answers": [
        "import torch",
        "def linear_quantize(x, scale, zero_point):   # converts before clamping: wraps around\n"
        "    return (torch.round(x / scale) + zero_point).to(torch.int8)",
        "def linear_dequantize(codes, scale, zero_point):\n    return scale * (codes.float() - zero_point)",
        "def scale_and_zero_point(x):\n    # YOUR CODE HERE\n    raise NotImplementedError",
        "def mse(x, y):\n    assert x.dim() == 2, 'only matrices'   # fails on the last case only\n"
        "    return (x - y).pow(2).mean().item()",
    ],
    "04_answers": [
        "import math",
        "def perplexity_from_losses(losses):\n    return math.exp(losses.double().mean().item())",
        "def bytes_for_model(n_params, bits, group_size):   # forgets the groups' scales\n"
        "    return float(n_params * bits / 8)",
        "def choose_group_size(n_params, bits, budget_gb, candidates):\n    raise ValueError('no budget here')",
        "def keep_in_high_precision(names, ppls, ppl_base, max_increase):\n    raise NotImplementedError",
        "def pick_precision(ppls, sizes, max_increase):   # always the baseline: right on some cases\n"
        "    return 0",
    ],
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    paths = []
    for name, cells in SUBMISSIONS.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nbformat.write(nb, root / f"{name}.ipynb")
        paths.append(root / f"{name}.ipynb")
    results = grade_batch(paths, root / "out", GradeOptions(timeout=120, jobs=2, exercise_timeout=30),
                          progress=False)
    return {r.notebook: r for r in results}


def _in_the_notebook(cells: list[str]) -> dict:
    """The submission's cells executed here, as a learner's kernel would before `check(...)`."""
    ns: dict = {}
    for cell in cells:
        exec(compile(cell, "<cell>", "exec"), ns)
    return ns


def _body(notebook_message: str) -> str:
    """A notebook line without its emoji and its hint: what a report says on its first line."""
    return re.sub(r"^\S+ ", "", notebook_message.split("\n   Hint: ")[0])


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_check_and_the_grader_give_the_same_verdict(graded, name):
    number = name[:2]
    submission = graded[number]
    assert submission.status == "ok", submission.to_json()
    ns = _in_the_notebook(SUBMISSIONS[name])
    for ex in list_exercises(number):
        if ex.name not in ns:  # an exercise added to the spec after these answers were written
            assert submission.exercises[ex.id].status == "missing", ex.id
            continue
        in_notebook = evaluate(ex.id, ns[ex.name])
        in_grade = submission.exercises[ex.id]
        assert (in_notebook.status, in_notebook.points) == (in_grade.status, in_grade.points), ex.id
        if in_grade.status in ("passed", "failed", "not_done"):   # the same sentence, framed for each
            assert in_grade.message.split("\n  expected: ")[0] == _body(in_notebook.message), ex.id


def test_every_kind_of_answer_is_covered(graded):
    seen = {e.status for r in graded.values() for e in r.exercises.values()}
    assert seen == {"passed", "failed", "error", "not_done", "missing"}
    partly = graded["04"].exercises["04.pick_precision"]
    assert partly.status == "failed" and 0 < partly.cases_passed < partly.cases
    raised_late = graded["03"].exercises["03.mse"]
    assert raised_late.status == "error" and raised_late.cases_passed == raised_late.cases - 1
    assert "only matrices" in raised_late.message and "line 2" in raised_late.message


def test_judge_decides_the_same_for_both_readers():
    """The reader changes the frame of the sentence, never the status, the points or the count."""
    for ex_id in ("07.bytes_saved", "10.int8_stops_winning"):   # all or nothing; partial credit
        _same_for_both_readers(get_exercise(ex_id))


def _same_for_both_readers(ex):
    cases = ex.cases()
    expected = [ex.reference(*c) for c in cases]
    runs = {
        "correct": [Outcome(Kind.RETURNED, e) for e in expected],
        "wrong": [Outcome(Kind.RETURNED, "wrong") for e in expected],
        "half": [Outcome(Kind.RETURNED, e if i % 2 else "wrong") for i, e in enumerate(expected)],
        "late stub": [Outcome(Kind.RETURNED, expected[0])] + [Outcome(Kind.NOT_DONE)] * (len(cases) - 1),
        "raising": [Outcome(Kind.RAISED, error="ValueError", message="boom", where="line 1")] * len(cases),
    }
    for label, outcomes in runs.items():
        a = judge(ex, cases, expected, Handed.FUNCTION, outcomes, Voice.NOTEBOOK)
        b = judge(ex, cases, expected, Handed.FUNCTION, outcomes, Voice.REPORT)
        assert (a.status, a.points, a.cases_passed) == (b.status, b.points, b.cases_passed), label
    half = judge(ex, cases, expected, Handed.FUNCTION, runs["half"], Voice.REPORT)
    assert half.status == "failed" and (half.points > 0) == ex.partial, (ex.id, half.points)
    for given in (Handed.NOTHING, Handed.NOT_A_FUNCTION, Handed.MISSING):
        a = judge(ex, cases, [], given, [], Voice.NOTEBOOK, "x")
        b = judge(ex, cases, [], given, [], Voice.REPORT, "x")
        assert (a.status, a.points) == (b.status, b.points) and a.points == 0, given
