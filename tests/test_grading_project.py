"""Projects: exercises judged by rules on what the learner made (`coursekit.exercises.project`).

A synthetic project first (a "file" of bytes that must spell a word, fit a size and be predicted
to the byte), through `judge` and through a whole grading batch: points rule by rule, the
measurements in grades.csv, the class plot in the summary. Then the capstone's own judge on
SmolLM2 files: the notebook's policy earns every point, uniform Q4_0 only the first three, and a
file that is not SmolLM2 gets a sentence per rule, never a traceback.
"""

from __future__ import annotations

import csv
import os
import sys

import nbformat
import pytest
import torch

from coursekit.exercises import evaluate, get_exercise
from coursekit.exercises.outcome import Handed, Kind, Outcome
from coursekit.exercises.project import Assessment, HandInError, Project, Rule
from coursekit.exercises.spec import Exercise
from coursekit.exercises.verdict import Status, Voice, judge
from coursekit.grading import GradeOptions, grade_batch, load_registry

SPEC = '''
import torch
from coursekit.exercises.project import Assessment, HandInError, Project, Rule
from coursekit.exercises.spec import Exercise

def _judge(value):
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], torch.Tensor)):
        raise HandInError("return (file, predicted_bytes)")
    file, predicted = value
    text = bytes(file.tolist()).decode("utf-8", "replace")
    return Assessment((Rule("it says hello", 1, text.startswith("hello"), repr(text[:10])),
                       Rule("at most 8 bytes", 1, len(text) <= 8, f"{len(text)} bytes"),
                       Rule("predicted exactly", 2, predicted == len(text), f"you predicted {predicted}")),
                      {"bytes": len(text), "score": 10.0 - len(text)},
                      {"the baseline": (5, 5.0), "the limit": (8, None)})

def _made():
    return torch.tensor(list(b"hello"), dtype=torch.uint8), 5

EXERCISES = [Exercise(id="03.made", name="made", reference=_made, points=4, title="a made thing",
                      hint="Say hello.", project=Project(_judge, plot=("bytes", "score")))]
'''


def _toy_judge(value):
    file, predicted = value
    return Assessment((Rule("non-empty", 1, len(file) > 0, f"{len(file)} bytes"),
                       Rule("predicted", 2, predicted == len(file), f"you predicted {predicted}")),
                      {"bytes": len(file)}, {"base": (1, 2.0)})


TOY = Exercise(id="03.toy", name="toy", reference=lambda: None, points=3, title="toy",
               hint=("a nudge", "the answer"), project=Project(_toy_judge, plot=("bytes", "bytes")))


def _verdict(value, voice=Voice.REPORT, ex=TOY):
    return judge(ex, [()], [None], Handed.FUNCTION, [Outcome(Kind.RETURNED, value)], voice, hint_level=1)


def test_rules_give_partial_credit_and_say_what_they_measured():
    v = _verdict((b"abc", 3))
    assert (v.status, v.points) == (Status.PASSED, 3.0)
    assert v.measures == {"bytes": 3} and v.marks == {"base": [1, 2.0]}
    v = _verdict((b"abc", 4))
    assert (v.status, v.points) == (Status.FAILED, 1.0)
    lines = v.message.splitlines()
    assert lines[0] == "03.toy (toy): 1 of 3 points, rule by rule:"
    assert lines[1:] == ["  ✓ 1/1 non-empty: 3 bytes", "  ✗ 0/2 predicted: you predicted 4"]
    shown = _verdict((b"abc", 4), Voice.NOTEBOOK).message
    assert shown.startswith("❌ 03.toy (toy): 1 of 3 points") and "Hint: a nudge" in shown


def test_a_hand_in_of_the_wrong_kind_is_told_why_with_no_points():
    def strict(value):
        raise HandInError("file: expected a uint8 tensor, got str")
    ex = Exercise(id="03.strict", name="strict", reference=lambda: None, project=Project(strict))
    v = _verdict("x", ex=ex)
    assert (v.status, v.points) == (Status.FAILED, 0.0)
    assert "cannot be judged: file: expected a uint8 tensor, got str" in v.message
    raised = judge(ex, [()], [None], Handed.FUNCTION, [Outcome(Kind.RAISED, error="OSError", message="no file")],
                   Voice.REPORT)
    assert raised.status is Status.ERROR and "OSError: no file" in raised.message
    stub = judge(ex, [()], [None], Handed.FUNCTION, [Outcome(Kind.NOT_DONE)], Voice.REPORT)
    assert stub.status is Status.NOT_DONE


def test_rules_that_do_not_add_up_to_the_points_are_the_specs_mistake():
    ex = Exercise(id="03.off", name="off", reference=lambda: None, points=5, project=Project(_toy_judge))
    with pytest.raises(RuntimeError, match="worth 3 points, the exercise 5"):
        _verdict((b"a", 1), ex=ex)


def test_a_project_is_declared_with_a_project_and_no_arguments():
    with pytest.raises(TypeError, match="project: expected a coursekit.exercises.project.Project"):
        Exercise(id="03.bad", name="bad", reference=lambda: None, project=_toy_judge)
    with pytest.raises(ValueError, match=r"cases: expected \[\(\)\] for a project"):
        Exercise(id="03.bad", name="bad", reference=lambda x: x, cases=lambda: [(1,)], project=Project(_toy_judge))
    with pytest.raises(TypeError, match=r"Project\(plot\): expected two names of measures"):
        Project(_toy_judge, plot=("bytes",))


# ------------------------------------------------------------------ a whole grading batch

def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch"), nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    spec = tmp_path_factory.mktemp("spec")
    (spec / "ck_project_spec.py").write_text(SPEC)
    sys.path.insert(0, str(spec))
    try:
        registry = load_registry(["ck_project_spec"])
        root = tmp_path_factory.mktemp("project")
        made = "def made():\n    return torch.tensor(list(b'{}'), dtype=torch.uint8), {}"
        _notebook(root / "subs" / "all" / "03_made.ipynb", made.format("hello", 5))
        _notebook(root / "subs" / "some" / "03_made.ipynb", made.format("hello world", 5))
        _notebook(root / "subs" / "path" / "03_made.ipynb", "def made():\n    return '/tmp/file.gguf'")
        results = grade_batch([root / "subs"], root / "out", GradeOptions(timeout=60, exercise_timeout=10),
                              registry=registry, progress=False)
        yield {os.path.basename(os.path.dirname(r.path)): r for r in results}, root / "out"
    finally:
        sys.path.remove(str(spec))


def test_a_batch_grades_a_project_rule_by_rule(graded):
    results, _ = graded
    ex = {k: r.exercises["03.made"] for k, r in results.items()}
    assert (ex["all"].points, ex["all"].status) == (4, "passed")
    assert (ex["some"].points, ex["some"].status) == (1, "failed")
    assert "✗ 0/1 at most 8 bytes: 11 bytes" in ex["some"].message
    assert ex["some"].measures == {"bytes": 11, "score": -1.0}
    assert ex["some"].marks == {"the baseline": [5, 5.0], "the limit": [8, None]}
    assert ex["path"].points == 0 and "cannot be judged: return (file, predicted_bytes)" in ex["path"].message


def test_grades_csv_lists_the_measures_and_the_summary_plots_the_class(graded):
    results, out = graded
    rows = {r["submission"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    some = next(k for k in rows if "some" in k)
    assert rows[some]["03.made"] == "1" and rows[some]["03.made bytes"] == "11"
    assert rows[some]["03.made score"] == "-1"
    assert next(r for k, r in rows.items() if "path" in k)["03.made bytes"] == ""
    assert (out / "summary_03.made.png").stat().st_size > 5_000
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## 03.made: score against bytes" in summary and "(summary_03.made.png)" in summary
    feedback = (out / "feedback").glob("*some*.md")
    text = next(feedback).read_text(encoding="utf-8")
    assert "at most 8 bytes: 11 bytes" in text and "hidden cases passed" not in text


# ------------------------------------------------------------------ the capstone on SmolLM2

@pytest.fixture(scope="module")
def smollm2_files(tmp_path_factory):
    pytest.importorskip("gguf")
    from coursekit import gguf_export, models
    if not models.smollm2.installed():
        pytest.skip("SmolLM2 is not installed (requirements-models.txt)")
    model, tok = models.load_lm(models.SMOLLM2)
    d = tmp_path_factory.mktemp("capstone")
    files = {}
    for name, fmt in (("q4_0", "q4_0"), ("q8_0", "q8_0")):
        path = d / f"{name}.gguf"
        predicted = sum(gguf_export.export_gguf(model, tok, path, fmt).values())
        files[name] = (torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), predicted)
    return files


def _capstone(value):
    return evaluate("14.capstone", lambda: value)


def test_capstone_uniform_q4_0_earns_the_first_three_rules_only(smollm2_files):
    r = _capstone(smollm2_files["q4_0"])
    assert r.points == 3 and r.status is Status.FAILED, r.message
    assert "✗ 0/1 on hidden text, its perplexity is below uniform Q4_0's" in r.message


def test_capstone_over_the_budget_is_not_measured_against_the_baseline(smollm2_files):
    file, predicted = smollm2_files["q8_0"]
    r = _capstone((file, predicted - 1))
    assert r.points == 1, r.message          # it reads as SmolLM2, and nothing else
    assert "✗ 0/1 its weights fit the budget" in r.message and "you predicted" in r.message
    assert r.message.count("not measured: the file must read as SmolLM2 and fit the budget first") == 2


def test_capstone_a_broken_file_gets_a_sentence_per_rule(smollm2_files):
    file, predicted = smollm2_files["q4_0"]
    r = _capstone((file[: len(file) // 2].clone(), predicted))
    assert r.points == 0 and "Traceback" not in r.message, r.message
    assert "does not read as a GGUF file" in r.message
    r = _capstone((file, float(predicted)))
    assert r.points == 0 and "predicted_bytes: expected an int (bytes of weights), got float" in r.message

