"""The learner-facing checker: one clear verdict, never a traceback from inside coursekit."""
import json
import pathlib
import re

import pytest
import torch

import coursekit.exercises as exercises
from coursekit.exercises import Exercise, check, evaluate


def _ref_double(x):
    return x * 2


def _cases():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(3, generator=g),), (torch.zeros(2, 2),), (torch.tensor([1e6]),)]


FAKE = [
    Exercise("99.double", "double", _ref_double, _cases, title="double a tensor", hint="multiply by two"),
    Exercise("99.answer", "answer", lambda: 42, hint="six times seven"),
    Exercise("99.pair", "pair", lambda x: (x.sum(), int(x.numel())), _cases),
]


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch):
    monkeypatch.setattr(exercises, "_REGISTRY", {e.id: e for e in FAKE})
    monkeypatch.setattr(exercises, "_FAILED_ATTEMPTS", {})   # a fresh kernel: no failed attempt yet


def test_correct_answer_passes():
    r = evaluate("99.double", lambda x: x + x)
    assert r.passed and r.points == 1 and "passed" in r.message


def test_wrong_value_says_expected_and_got_and_hint():
    r = evaluate("99.double", lambda x: x * 3)
    assert r.status == "failed" and "expected" in r.message and "got" in r.message
    assert "Hint: multiply by two" in r.message


def test_wrong_shape_and_dtype():
    assert "shape" in evaluate("99.double", lambda x: (x * 2).reshape(-1, 1)).message
    assert "dtype" in evaluate("99.double", lambda x: (x * 2).double()).message


@pytest.mark.parametrize("answer", [None, "a string", [1, 2], 3.0, torch.tensor([1.0])])
def test_wrong_types_get_a_message_not_an_exception(answer):
    # not a function: "missing", the grader's word for a name that holds no function
    r = evaluate("99.double", answer)
    assert r.status == ("not_done" if answer is None else "missing") and r.points == 0 and r.message


def test_function_returning_wrong_types():
    for bad in (lambda x: None, lambda x: "x", lambda x: [1.0], lambda x: x * float("nan")):
        r = evaluate("99.double", bad)
        assert r.status == "failed", r.message


def test_not_implemented_is_not_done_yet():
    def stub(x):
        raise NotImplementedError
    r = evaluate("99.double", stub)
    assert r.status == "not_done" and "not done yet" in r.message
    assert "Hint" not in r.message and r.hint_level == 0      # no hint before a real attempt


def test_learner_exception_is_reported_in_learner_terms(capsys):
    def broken(x):
        return x.no_such_method()
    check("99.double", broken)
    out = capsys.readouterr().out
    assert "AttributeError" in out and "no_such_method" in out and "Traceback" not in out
    assert "coursekit" not in out.split("raised", 1)[1]


def test_learner_tensors_are_not_mutated():
    answer = torch.tensor([42.0])
    before = answer.clone()
    evaluate("99.answer", answer)
    assert torch.equal(answer, before)

    seen = []
    def mutating(x):
        seen.append(x)
        x.mul_(2)
        return x
    assert evaluate("99.double", mutating).passed   # its own copy, so the reference is unaffected


def test_value_exercise_accepts_value_or_function():
    assert evaluate("99.answer", 42).passed
    assert evaluate("99.answer", lambda: 42).passed
    r = evaluate("99.answer", 41)
    assert r.status == "failed" and "41" in r.message and "42" in r.message
    assert evaluate("99.answer", 42.5).status == "failed"
    assert evaluate("99.answer", True).status == "failed"


def test_tuples_compared_item_by_item():
    assert evaluate("99.pair", lambda x: (x.sum(), x.numel())).passed
    assert "item 1" in evaluate("99.pair", lambda x: (x.sum(), 0)).message


def test_unknown_id_never_raises(capsys):
    check("nope", 1)
    check(None, 1)
    out = capsys.readouterr().out
    assert "no exercise called 'nope'" in out and "99.double" in out


def test_check_prints_one_line_verdict(capsys):
    check("99.double", _ref_double)
    assert capsys.readouterr().out.strip().startswith("✅")


def _real_ids():
    exercises._REGISTRY = None
    return sorted(e.id for e in exercises.list_exercises())


REAL_IDS = _real_ids()


@pytest.mark.parametrize("exercise_id", REAL_IDS)
def test_every_real_spec_passes_with_its_reference(monkeypatch, exercise_id):
    monkeypatch.setattr(exercises, "_REGISTRY", None)
    ex = exercises.get_exercise(exercise_id)
    assert ex.id.split(".")[0].isdigit() and ex.name.isidentifier() and ex.points > 0
    r = evaluate(ex.id, ex.reference)
    assert r.passed and r.points == ex.points, r.message


@pytest.mark.parametrize("exercise_id", REAL_IDS)
def test_every_real_spec_says_a_stub_is_not_done_yet(monkeypatch, exercise_id):
    monkeypatch.setattr(exercises, "_REGISTRY", None)

    def stub(*args):
        raise NotImplementedError
    for _ in range(2):      # Run All on a learner copy, twice: never a hint
        r = evaluate(exercise_id, stub)
        assert r.status == "not_done" and "not done yet" in r.message and "Hint" not in r.message


def test_every_real_spec_rejects_a_wrong_answer(monkeypatch):
    monkeypatch.setattr(exercises, "_REGISTRY", None)
    for ex in exercises.list_exercises():
        wrong = (lambda *args: "not an answer")
        assert not evaluate(ex.id, wrong).passed, ex.id


@pytest.mark.parametrize("exercise_id", REAL_IDS)
def test_every_real_spec_has_deterministic_hidden_cases(monkeypatch, exercise_id):
    # a learner re-running a check, and the grader, must see exactly the same cases
    monkeypatch.setattr(exercises, "_REGISTRY", None)
    ex = exercises.get_exercise(exercise_id)
    first, second = ex.cases(), ex.cases()
    if first == [()]:                     # a value exercise (e.g. multiple choice): one empty case
        assert second == [()]
        return
    assert len(first) >= 3, "a function exercise needs several hidden cases, edge cases among them"
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert _same(a, b)


def _same(x, y) -> bool:
    """Equal values, tensors compared exactly, lists and tuples of them item by item."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y


NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_master_notebook_checks_each_of_its_exercises_after_its_solution(monkeypatch, notebook):
    """Each exercise registered for notebook NN has one cell that is only its check, right after
    the cell that defines the function with a marked solution (what `coursekit release` stubs)."""
    monkeypatch.setattr(exercises, "_REGISTRY", None)
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    checked = {}
    for i, src in enumerate(cells):
        m = re.fullmatch(r'check\("(\d\d\.\w+)", (\w+)\)', src.strip())
        if m:
            checked.setdefault(m.group(1), []).append((i, m.group(2)))
    expected = sorted(e.id for e in exercises.list_exercises(notebook.name[:2]))
    assert sorted(checked) == expected
    for exercise_id, cells_checking in checked.items():
        assert len(cells_checking) == 1, f"{exercise_id} is checked in {len(cells_checking)} cells"
        [(i, name)] = cells_checking
        assert name == exercises.get_exercise(exercise_id).name, exercise_id
        assert f"def {name}(" in cells[i - 1] and "### BEGIN SOLUTION" in cells[i - 1] \
            and "### END SOLUTION" in cells[i - 1], exercise_id


def test_whole_numbers_compare_exactly(monkeypatch):
    big = Exercise("99.big", "big", lambda: 2 ** 60 + 1)
    monkeypatch.setattr(exercises, "_REGISTRY", {"99.big": big, "99.answer": FAKE[1]})
    assert evaluate("99.big", 2 ** 60 + 1).passed
    assert not evaluate("99.big", 2 ** 60).passed
    assert not evaluate("99.answer", 42.000001).passed


DECLARED = '''
from coursekit.exercises.spec import Exercise, exercise

def _cases():
    return [(1,), (2,)]

@exercise(title="double it", cases=_cases, points=2, hint="times two")
def double(x):
    return 2 * x

@exercise()
def answer():
    return 42

also_double = double          # a second name for the same reference: still one exercise

EXERCISES = [Exercise("98.listed", "listed", lambda: 1)]
'''


def test_an_exercise_is_declared_once_on_its_reference(tmp_path, monkeypatch):
    """The id comes from the spec module (nbNN_ -> "NN.") and the name from the function."""
    from coursekit.exercises.spec import exercises_in
    (tmp_path / "nb98_declared.py").write_text(DECLARED)
    (tmp_path / "not_a_spec.py").write_text("from coursekit.exercises.spec import exercise\n"
                                            "@exercise()\ndef f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    module = importlib.import_module("nb98_declared")
    found = exercises_in(module)
    assert [e.id for e in found] == ["98.listed", "98.double", "98.answer"]
    double = found[1]
    assert (double.name, double.reference, double.title, double.points, double.hint) == \
        ("double", module.double, "double it", 2, "times two")
    assert module.double(3) == 6 and module.double.exercise is double   # still the plain function
    assert found[2].is_value and found[2].atol == Exercise("x", "x", None).atol   # the defaults
    with pytest.raises(ValueError, match=r"@exercise on f: expected a spec module named nbNN_topic, "
                                         r"got 'not_a_spec'"):
        importlib.import_module("not_a_spec")
