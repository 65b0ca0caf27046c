"""Partial credit, feedback, class summary, gradebooks, similarity, shards and their merge.

The unit tests build results by hand (no kernel). One batch of four small submissions is graded
by `coursekit grade` three ways: on one machine, and as 2 shards merged with `coursekit grade
merge`. Every file the merge writes must equal the single-machine batch's.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit.cli import main
from coursekit.exercises.outcome import Handed, Kind, Outcome
from coursekit.exercises.spec import Exercise
from coursekit.exercises.verdict import Status, Voice, judge
from coursekit.grading import ExerciseResult, RunStatus, SubmissionResult
from coursekit.grading import gradebook, shards, similarity, summary
from coursekit.grading.forbid import targets

SPEC = '''
from coursekit.exercises.spec import Exercise

def _inc(n):
    return n + 1

def _sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0

EXERCISES = [
    Exercise(id="02.inc", name="inc", reference=_inc, cases=lambda: [(1,), (41,)], hint="Add one."),
    Exercise(id="02.sign", name="sign", reference=_sign, points=2, partial=True,
             cases=lambda: [(-3,), (0,), (5,), (-0.5,)], hint="Zero is neither positive nor negative."),
]
'''

INC = "def inc(n):\n    return n + 1"
SUBMISSIONS = {
    "subs/alice_02_homework.ipynb": [INC, "def sign(x):\n    if x > 0:\n        return 1\n    if x < 0:\n"
                                          "        return -1\n    return 0"],
    # alice's sign with other names, a docstring and comments: identical after normalization
    "subs/bob_02_homework.ipynb": ["def inc(k):\n    return k + 1  # plus one",
                                   "def sign(value):\n    '''the sign'''\n    if value > 0:   # positive\n"
                                   "        return 1\n    if value < 0:\n        return -1\n    return 0"],
    "subs/carol_02_homework.ipynb": [INC, "def sign(x):\n    return 1 if x > 0 else -1   # forgets zero"],
    "subs/dave/02_homework.ipynb": ["def sign(x):\n    raise NotImplementedError"],
}


def write_nb(path: Path, cells) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


# --------------------------------------------------------------------------- partial credit (no kernel)
def _sign_exercise(partial: bool) -> Exercise:
    def sign(x):
        return (x > 0) - (x < 0)
    return Exercise(id="02.sign", name="sign", reference=sign, points=2, partial=partial,
                    cases=lambda: [(-3,), (0,), (5,), (-0.5,)])


@pytest.mark.parametrize("voice", [Voice.NOTEBOOK, Voice.REPORT])
def test_partial_credit_is_per_case_only_when_the_spec_says_so(voice):
    cases = [(-3,), (0,), (5,), (-0.5,)]
    expected = [-1, 0, 1, -1]
    got = [Outcome(Kind.RETURNED, v) for v in (-1, -1, 1, -1)]          # 3 of 4
    v = judge(_sign_exercise(True), cases, expected, Handed.FUNCTION, got, voice)
    assert (v.status, v.cases_passed, v.points) == (Status.FAILED, 3, 1.5)
    v = judge(_sign_exercise(False), cases, expected, Handed.FUNCTION, got, voice)
    assert (v.status, v.cases_passed, v.points) == (Status.FAILED, 3, 0.0)
    raised = [Outcome(Kind.RETURNED, -1)] + [Outcome(Kind.RAISED, error="E", message="m")] * 3
    assert judge(_sign_exercise(True), cases, expected, Handed.FUNCTION, raised, voice).points == 0.5


def test_forbidden_overrides_a_correct_answer():
    ex = _sign_exercise(True)
    ok = [Outcome(Kind.RETURNED, v) for v in (-1, 0, 1, -1)]
    v = judge(ex, ex.cases(), [-1, 0, 1, -1], Handed.FUNCTION, ok, Voice.REPORT,
              forbidden=("coursekit.quant.quantize",))
    assert (v.status, v.points, v.cases_passed) == (Status.FORBIDDEN, 0.0, 4)
    assert "`coursekit.quant.quantize`" in v.message


def test_forbid_and_partial_are_checked_in_the_spec():
    with pytest.raises(ValueError, match="forbid"):
        Exercise(id="02.x", name="x", reference=len, forbid=("os.system",))
    with pytest.raises(ValueError, match="partial"):
        Exercise(id="02.x", name="x", reference=len, partial="yes")
    assert Exercise(id="02.x", name="x", reference=len, forbid="coursekit.quant.quantize").forbid == \
        ("coursekit.quant.quantize",)
    with pytest.raises(ValueError, match="not a Python function"):
        targets(["coursekit.quant.no_such_function"])
    [[dotted, module, filename, qualname]] = targets(["coursekit.layers.W8A16Linear.forward"])
    assert (module, qualname) == ("coursekit.layers", "W8A16Linear.forward") and filename.endswith("layers.py")
    # decorated (torch.no_grad): the function's own code, not the decorator's, which others share
    [[_, _, filename, qualname]] = targets(["coursekit.models.lm.perplexity"])
    assert (Path(filename).name, qualname) == ("lm.py", "perplexity")


def test_course_specs_forbid_real_functions():
    from coursekit.exercises import list_exercises
    forbidding = [e for e in list_exercises() if e.forbid]
    assert {e.notebook for e in forbidding} >= {"03", "05", "07"}
    for e in forbidding:
        assert len(targets(e.forbid)) == len(e.forbid), e.id


# --------------------------------------------------------------------------- hand-made results
def _result(label, nb, points: dict, statuses: dict | None = None, messages: dict | None = None):
    r = SubmissionResult(label, label, "sha", nb, RunStatus.OK, "the notebook ran to the end.")
    for ex_id, (p, m) in points.items():
        st = (statuses or {}).get(ex_id, Status.PASSED if p == m else Status.FAILED)
        msg = (messages or {}).get(ex_id, f"{ex_id}: passed." if st == Status.PASSED else f"{ex_id}: failed.")
        r.exercises[ex_id] = ExerciseResult(ex_id, p, m, st, msg, 0, 2)
    return r


class _Ex:
    def __init__(self, ex_id, points, module):
        self.id, self.points, self.notebook = ex_id, points, ex_id[:2]
        self.reference = type("R", (), {"__module__": module})()


REGISTRY = {"03.a": _Ex("03.a", 2, "coursekit.exercises.nb03_quantization_theory"),
            "03.b": _Ex("03.b", 1, "coursekit.exercises.nb03_quantization_theory"),
            "05.c": _Ex("05.c", 2, "coursekit.exercises.nb05_symmetric_vs_asymmetric")}
ROWS = [(str(i), r) for i, r in enumerate([
    _result("subs/alice_03_quantization_theory.ipynb", "03", {"03.a": (2, 2), "03.b": (0, 1)}),
    _result("subs/alice_03_quantization_theory_v2.ipynb", "03", {"03.a": (2, 2), "03.b": (1, 1)}),
    _result("subs/bob/03_quantization_theory.ipynb", "03", {"03.a": (0.5, 2), "03.b": (0, 1)}),
    _result("subs/alice_05_symmetric.ipynb", "05", {"05.c": (2, 2)}),
    _result("homework.ipynb", None, {}),
])]


def test_gradebook_canvas_layout():
    text = gradebook.render(gradebook.build(ROWS, REGISTRY), "canvas")
    assert text.splitlines() == [
        "Student,ID,SIS User ID,SIS Login ID,Section,03_quantization_theory,05_symmetric_vs_asymmetric",
        "Points Possible,,,,,3,2",
        "alice,,,alice,,3,2",        # the best of alice's two submissions of 03
        "bob,,,bob,,0.50,",          # a folder per learner; no 05 submitted
    ]
    assert gradebook.build(ROWS, REGISTRY).unmatched == ["homework.ipynb"]


def test_gradebook_moodle_and_csv_layouts():
    assert gradebook.render(gradebook.build(ROWS, REGISTRY), "moodle").splitlines() == [
        "Username,03_quantization_theory,05_symmetric_vs_asymmetric", "alice,3,2", "bob,0.50,"]
    rows = list(csv.DictReader(io.StringIO(gradebook.render(gradebook.build(ROWS, REGISTRY), "csv"))))
    assert rows[0] == {"learner": "alice", "03_quantization_theory": "3", "05_symmetric_vs_asymmetric": "2",
                       "total": "5", "max_total": "5"}
    emails = [(k, _result(f"subs/{who}@uni.edu_03_x.ipynb", "03", {"03.a": (2, 2)})) for k, who in (("1", "a"), ("2", "b"))]
    assert gradebook.render(gradebook.build(emails, REGISTRY), "moodle").startswith("Email address,")


def test_gradebook_learner_pattern():
    book = gradebook.build(ROWS, REGISTRY, r"subs/(?P<learner>[a-z]+)")
    assert sorted(book.scores) == ["alice", "bob"] and book.unmatched == ["homework.ipynb"]
    with pytest.raises(gradebook.GradebookError, match="group named learner"):
        gradebook.compile_pattern(r"(\w+)_03")
    with pytest.raises(gradebook.GradebookError, match="not a regular expression"):
        gradebook.compile_pattern(r"(?P<learner>")
    with pytest.raises(gradebook.GradebookError, match="--gradebook must be one of"):
        gradebook.render(gradebook.build(ROWS, REGISTRY), "blackboard")


def test_summary_counts_the_same_failure_once():
    msgs = {"03.b": "03.b (t): failed on hidden case 2 of 5 (inputs list of 1: (3)): got 1, expected 2.\n  expected: 2"}
    other = {"03.b": "03.b (t): failed on hidden case 4 of 5 (inputs list of 1: (7)): got 1, expected 2.\n  expected: 2"}
    rows = [("a", _result("a_03_x.ipynb", "03", {"03.a": (2, 2), "03.b": (0, 1)}, messages=msgs)),
            ("b", _result("b_03_x.ipynb", "03", {"03.a": (0, 2), "03.b": (0, 1)}, messages=other))]
    s = {x.id: x for x in summary.summarize(rows, REGISTRY)}
    assert (s["03.a"].passed, s["03.a"].graded, s["03.a"].pass_rate) == (1, 2, 0.5)
    assert (s["03.b"].common_failure, s["03.b"].common_count) == ("failed: got 1, expected 2.", 2)
    md = summary.to_markdown(list(s.values()), rows, None)
    assert "| 03.a | 2 | 1 | 50 % | 1.00 / 2 |" in md
    assert summary.figure(list(s.values())).axes[0].get_title() == "Pass rate per exercise"


# --------------------------------------------------------------------------- similarity (no kernel)
def _nb_bytes(cells) -> bytes:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])).encode()


def test_similarity_ignores_names_comments_and_docstrings():
    ex = [Exercise(id="02.sign", name="sign", reference=len)]
    [a, b, c, stub] = [similarity.solution_hashes(_nb_bytes(SUBMISSIONS[k]), ex).get("02.sign")
                       for k in sorted(SUBMISSIONS)]
    assert a == b and a != c and stub is None
    magics = similarity.solution_hashes(_nb_bytes(["%timeit 1\n" + SUBMISSIONS["subs/alice_02_homework.ipynb"][1]]), ex)
    assert magics["02.sign"] == a
    assert similarity.solution_hashes(b"not json", ex) == {}


# --------------------------------------------------------------------------- shards (no kernel)
def test_shard_argument_and_partition():
    assert shards.parse("2/8") == (2, 8) and shards.parse(" 1 / 1 ") == (1, 1)
    for bad in ("0/2", "3/2", "a/b", "2", "1/0", "-1/2"):
        with pytest.raises(shards.ShardError, match="--shard"):
            shards.parse(bad)

    class It:
        def __init__(self, label):
            self.label = label
    items = [It(f"s{k:02d}.ipynb") for k in (5, 3, 9, 1, 7, 2, 8)]
    parts = [shards.select(items, i, 3) for i in (1, 2, 3)]
    labels = [[x.label for x in p] for p in parts]
    assert sorted(sum(labels, [])) == sorted(x.label for x in items)   # disjoint and covering
    assert [len(p) for p in parts] == [3, 2, 2]
    assert labels == [[x.label for x in shards.select(items[::-1], i, 3)][::-1] for i in (1, 2, 3)]  # order-free


def test_cli_rejects_bad_options_naming_them(tmp_path, capsys):
    sub = write_nb(tmp_path / "02_x.ipynb", [INC])
    out = str(tmp_path / "o")
    for args, says in ((["--shard", "3/2"], "--shard"), (["--shard", "x"], "--shard"),
                       (["--gradebook", "xls"], "--gradebook"), (["--learner-pattern", "(\\w+)"], "--learner-pattern"),
                       (["--gradebook", "csv", "--learner-pattern", "(\\w+)"], "--learner-pattern")):
        assert main(["grade", str(sub), "--out", out, *args]) == 2, args
        assert says in capsys.readouterr().err, args
    assert main(["grade", "merge", "--out", out]) == 2
    assert "shard folders" in capsys.readouterr().err
    assert main(["grade", "merge", str(tmp_path / "nope"), "--out", out]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["grade", "merge", str(tmp_path / "plain"), "--out", out]) == 2
    assert "not a shard folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- one batch, graded 3 ways
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    (root / "ck_rep_spec.py").write_text(SPEC)
    for name, cells in SUBMISSIONS.items():
        write_nb(root / name, cells)
    sys.path.insert(0, str(root))
    old = Path.cwd()
    import os
    os.chdir(root)
    common = ["--spec-module", "ck_rep_spec", "--timeout", "60", "--jobs", "2", "--gradebook", "canvas"]
    try:
        codes = [main(["grade", "subs", "--out", "single", *common]),
                 main(["grade", "subs", "--out", "shard-1", "--shard", "1/2", *common]),
                 main(["grade", "subs", "--out", "shard-2", "--shard", "2/2", *common]),
                 main(["grade", "merge", "shard-2", "shard-1", "--out", "merged", *common[:2], "--gradebook", "canvas"])]
        bad = [main(["grade", "merge", "shard-1", "--out", "merged-bad", *common[:2]]),
               main(["grade", "merge", "shard-1", "shard-1", "--out", "merged-bad", *common[:2]])]
    finally:
        os.chdir(old)
        sys.path.remove(str(root))
    return {"root": root, "codes": codes, "bad": bad}


def _strip(doc):
    for s in doc["submissions"]:
        s.pop("details")
    return doc


def test_merge_of_shards_equals_the_single_machine_batch(graded):
    root = graded["root"]
    assert graded["codes"] == [0, 0, 0, 0]
    one = json.loads((root / "shard-1" / "shard.json").read_text())
    two = json.loads((root / "shard-2" / "shard.json").read_text())
    assert sorted(one["mine"] + two["mine"]) == sorted(k for _, k in one["batch"]) and one["mine"] and two["mine"]
    single, merged = root / "single", root / "merged"
    for name in ("grades.csv", "summary.md", "similarity.csv", "gradebook-canvas.csv"):
        assert (merged / name).read_text() == (single / name).read_text(), name
    assert _strip(json.loads((merged / "grades.json").read_text())) == \
        _strip(json.loads((single / "grades.json").read_text()))
    feedback = sorted(p.name for p in (single / "feedback").iterdir())
    assert feedback == sorted(p.name for p in (merged / "feedback").iterdir()) and len(feedback) == 4
    for name in feedback:
        assert (merged / "feedback" / name).read_text() == (single / "feedback" / name).read_text()


def test_merge_refuses_an_incomplete_or_repeated_set(graded):
    assert graded["bad"] == [2, 2]


def test_partial_credit_feedback(graded):
    rows = {r["submission"]: r for r in csv.DictReader((graded["root"] / "single" / "grades.csv").open())}
    assert rows["subs/carol_02_homework.ipynb"]["02.sign"] == "1.50"
    assert rows["subs/alice_02_homework.ipynb"]["total"] == "3"
    assert rows["subs/dave/02_homework.ipynb"]["02.sign"] == "0"       # a stub: not done, no credit
    md = (graded["root"] / "single" / "feedback" / "subs__carol_02_homework.md").read_text()
    assert "02.sign: 1.50 / 2" in md and "3 of 4 hidden cases passed (partial credit" in md
    assert "expected: 0 (int)" in md and "got:      -1 (int)" in md
    assert "Hint: Zero is neither positive nor negative." in md


def test_summary_similarity_and_gradebook_files(graded):
    single = graded["root"] / "single"
    md = (single / "summary.md").read_text()
    assert "| 02.sign | 4 | 2 | 50 % |" in md and "| 02.inc | 4 | 3 | 75 % |" in md
    assert (single / "summary.png").read_bytes()[:4] == b"\x89PNG"
    sim = list(csv.DictReader((single / "similarity.csv").open()))
    pairs = {(r["exercise"], r["submission"]): r["matches"] for r in sim}
    assert pairs[("02.sign", "subs/alice_02_homework.ipynb")] == "reference solution; subs/bob_02_homework.ipynb"
    assert ("02.sign", "subs/carol_02_homework.ipynb") not in pairs
    assert pairs[("02.inc", "subs/carol_02_homework.ipynb")].startswith("reference solution")
    book = (single / "gradebook-canvas.csv").read_text().splitlines()
    assert book[:2] == ["Student,ID,SIS User ID,SIS Login ID,Section,notebook 02", "Points Possible,,,,,3"]
    assert book[2:] == ["alice,,,alice,,3", "bob,,,bob,,3", "carol,,,carol,,2.50", "dave,,,dave,,0"]
    doc = json.loads((single / "grades.json").read_text())
    assert list(doc)[0] == "isolation" and "solutions" not in doc["submissions"][0]


def test_tripwires_catch_captured_references_and_copies_then_disarm():
    """forbid.arm in this process: what the harness does in the kernel around the learner's calls."""
    import types
    import torch
    import coursekit.quant as Q
    from coursekit.grading.forbid import ForbiddenCall, arm, disarm
    captured = Q.quantization_error
    copy = types.FunctionType(Q.quantization_error.__code__, Q.quantization_error.__globals__)
    x = torch.ones(3)
    calls: list = []
    armed = arm(targets(["coursekit.quant.quantization_error"]), calls, "<test>")
    try:
        assert len(armed) >= 2                       # the module's function and the copy at least
        for fn in (captured, copy, Q.quantization_error):
            with pytest.raises(ForbiddenCall):
                fn(x, x)
        assert Q.quantize(x).dequantize().shape == x.shape   # what is not forbidden still works
    finally:
        disarm(armed)
    assert calls == ["coursekit.quant.quantization_error"] * 3
    assert captured(x, x) == 0.0 and copy(x, x) == 0.0 and "__coursekit_forbidden__" not in vars(Q)
