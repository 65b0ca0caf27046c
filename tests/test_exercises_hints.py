"""Progressive hints: none before a real attempt, a nudge after the first failure, more after each.

`check()` shows level k of an exercise's hint after its k-th failed attempt (failed or error) in a
kernel, never for a stub, for something that is not a function, or on a pass. The grader's report
has no hint in its sentence and the same statuses and points whatever the level; its feedback
page shows the first level only (`Exercise.hint` as text).
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import pathlib
import pickle
import re
import textwrap

import pytest
import torch

import coursekit.exercises as exercises
from coursekit.exercises import Exercise, Hint, check, evaluate, reset_attempts
from coursekit.exercises.outcome import Handed, Kind, Outcome
from coursekit.exercises.verdict import Status, Voice, judge

LEVELS = ("think about what doubling means", "add the tensor to itself", "return x * 2")


def _cases():
    return [(torch.tensor([1.0, -2.0]),), (torch.zeros(3),), (torch.tensor([5.0]),)]


FAKE = [
    Exercise("99.double", "double", lambda x: x * 2, _cases, title="double a tensor", hint=LEVELS),
    Exercise("99.triple", "triple", lambda x: x * 3, _cases, hint=("a nudge", "the formula")),
    Exercise("99.plain", "plain", lambda x: x + 1, _cases, hint="add one"),
    Exercise("99.bare", "bare", lambda x: x - 1, _cases),
]


def _stub(x):
    raise NotImplementedError


def _wrong(x):
    return x * 5


def _raising(x):
    return x.no_such_method()


@pytest.fixture(autouse=True)
def fresh_kernel(monkeypatch):
    monkeypatch.setattr(exercises, "_REGISTRY", {e.id: e for e in FAKE})
    monkeypatch.setattr(exercises, "_FAILED_ATTEMPTS", {})


def _shown(message: str) -> list[int]:
    """Which levels of LEVELS the message shows (1-based)."""
    return [i for i, level in enumerate(LEVELS, start=1) if level in message]


# --------------------------------------------------------------------------- when, and which level
def test_a_stub_gets_no_hint_however_often_it_is_checked(capsys):
    for _ in range(3):
        check("99.double", _stub)
    out = capsys.readouterr().out
    assert out.count("not done yet") == 3 and "Hint" not in out and _shown(out) == []
    assert exercises._FAILED_ATTEMPTS == {}


def test_the_first_wrong_answer_shows_level_1_only():
    r = evaluate("99.double", _wrong)
    assert r.status == "failed" and r.hint_level == 1 and _shown(r.message) == [1]
    assert r.message.endswith(f"\n   Hint: {LEVELS[0]}\n"
                              f"   (hint 1 of 3; the next failed check shows a more concrete one)")


def test_the_second_wrong_answer_shows_level_2_and_the_last_stays():
    seen = [evaluate("99.double", _wrong) for _ in range(5)]
    assert [r.hint_level for r in seen] == [1, 2, 3, 3, 3]
    assert [_shown(r.message) for r in seen] == [[1], [2], [3], [3], [3]]
    assert seen[2].message.endswith("(hint 3 of 3, the last)")


def test_an_error_counts_as_a_failed_attempt():
    first = evaluate("99.double", _raising)
    second = evaluate("99.double", _wrong)
    assert first.status == "error" and _shown(first.message) == [1]
    assert second.status == "failed" and _shown(second.message) == [2]


def test_a_pass_shows_no_hint_and_does_not_reset_the_count():
    evaluate("99.double", _wrong)
    passed = evaluate("99.double", lambda x: x + x)
    assert passed.passed and passed.hint_level == 0
    assert passed.message == "✅ 99.double (double a tensor): passed on 3 hidden cases."
    assert _shown(evaluate("99.double", _wrong).message) == [2]


def test_what_is_not_a_function_gets_no_hint_and_is_not_counted():
    for answer in (None, ..., 3.0, torch.tensor([1.0])):
        r = evaluate("99.double", answer)
        assert r.status in ("not_done", "missing") and "Hint" not in r.message, answer
    assert _shown(evaluate("99.double", _wrong).message) == [1]


def test_a_late_stub_is_not_done_and_gets_no_hint():
    def half_done(x):
        if x.numel() == 3:
            raise NotImplementedError
        return x * 2
    r = evaluate("99.double", half_done)
    assert r.status == "not_done" and "Hint" not in r.message


def test_each_exercise_counts_its_own_attempts():
    evaluate("99.double", _wrong)
    evaluate("99.double", _wrong)
    r = evaluate("99.triple", _wrong)
    assert "a nudge" in r.message and "the formula" not in r.message
    assert exercises._FAILED_ATTEMPTS == {"99.double": 2, "99.triple": 1}


def test_reset_attempts_starts_the_hints_over():
    evaluate("99.double", _wrong)
    evaluate("99.triple", _wrong)
    reset_attempts("99.double")
    assert _shown(evaluate("99.double", _wrong).message) == [1]
    assert "the formula" in evaluate("99.triple", _wrong).message
    reset_attempts()
    assert exercises._FAILED_ATTEMPTS == {}


def test_a_plain_string_is_a_one_level_hint():
    for _ in range(2):
        r = evaluate("99.plain", _wrong)
        assert r.message.endswith("\n   Hint: add one") and r.hint_level == 1
    r = evaluate("99.bare", _wrong)
    assert r.status == "failed" and "Hint" not in r.message and r.hint_level == 0


def test_check_prints_what_evaluate_says(capsys):
    check("99.double", _wrong)
    out = capsys.readouterr().out
    assert out.startswith("❌ 99.double") and _shown(out) == [1]


# --------------------------------------------------------------------------- the spec's Hint
def test_levels_become_a_hint_whose_text_is_the_first_level():
    ex = FAKE[0]
    assert isinstance(ex.hint, Hint) and ex.hint == LEVELS[0] and f"{ex.hint}" == LEVELS[0]
    assert ex.hints == LEVELS and ex.hint_at(2) == LEVELS[1] and ex.hint_at(9) == LEVELS[2]
    assert json.dumps({"hint": ex.hint}) == json.dumps({"hint": LEVELS[0]})   # grades.json
    for copied in (pickle.loads(pickle.dumps(ex.hint)), copy.deepcopy(ex.hint)):
        assert copied.levels == LEVELS
    plain = FAKE[2]
    assert type(plain.hint) is str and plain.hints == ("add one",) and FAKE[3].hints == ()
    assert FAKE[3].hint_at(1) == "" and plain.hint_at(0) == ""


@pytest.mark.parametrize("levels", [(), ("nudge", ""), ("nudge", 3)])
def test_a_hint_needs_non_empty_levels(levels):
    with pytest.raises(ValueError, match="non-empty strings"):
        Hint(*levels)


def test_the_feedback_page_shows_the_first_level_only():
    from coursekit.grading.report import feedback
    from coursekit.grading.results import ExerciseResult, RunStatus, SubmissionResult
    ex = FAKE[0]
    result = SubmissionResult("s", "s.ipynb", "0" * 64, "99", RunStatus.OK, "ran")
    result.exercises[ex.id] = ExerciseResult(ex.id, 0.0, 1.0, Status.FAILED, f"{ex.id}: failed.", 0, 3,
                                             ex.hint, ex.title)
    page = feedback(result)
    assert f"Hint: {LEVELS[0]}" in page and LEVELS[1] not in page and LEVELS[2] not in page


def test_the_level_changes_neither_the_status_nor_the_points():
    ex = FAKE[0]
    cases = ex.cases()
    expected = [ex.reference(*c) for c in cases]
    runs = {
        "correct": [Outcome(Kind.RETURNED, e) for e in expected],
        "wrong": [Outcome(Kind.RETURNED, e * 5) for e in expected],
        "stub": [Outcome(Kind.NOT_DONE)] * len(cases),
        "raising": [Outcome(Kind.RAISED, error="ValueError", message="boom")] * len(cases),
    }
    for label, outcomes in runs.items():
        report = judge(ex, cases, expected, Handed.FUNCTION, outcomes, Voice.REPORT, hint_level=3)
        assert "Hint" not in report.message and _shown(report.message) == [], label
        for level in range(5):
            v = judge(ex, cases, expected, Handed.FUNCTION, outcomes, Voice.NOTEBOOK, hint_level=level)
            assert (v.status, v.points, v.cases_passed) == \
                (report.status, report.points, report.cases_passed), (label, level)


# --------------------------------------------------------------------------- the real specs
def _real():
    exercises._REGISTRY = None
    return exercises.list_exercises()


REAL = _real()
COURSE = [e for e in REAL if int(e.notebook) <= 9]
NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
_SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def _master_solution(ex: Exercise) -> str:
    """The body between the solution markers in the master notebook, "" if there is none."""
    for path in NOTEBOOKS.glob(f"{ex.notebook}_*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and f"def {ex.name}(" in src and "### BEGIN SOLUTION" in src:
                return textwrap.dedent(_SOLUTION.search(src).group(1))
    return ""


def _code_snippets(source: str) -> set[str]:
    """Every statement and sub-expression of a function body longer than 12 characters (the
    return expression among them), without docstrings and without the decorator."""
    tree = ast.parse(textwrap.dedent(source))
    body = tree.body
    if len(body) == 1 and isinstance(body[0], ast.FunctionDef):
        body = body[0].body
    snippets = set()
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue   # a docstring
        for node in ast.walk(stmt):
            if isinstance(node, (ast.stmt, ast.expr)):
                text = ast.get_source_segment(textwrap.dedent(source), node) or ""
                if len(text) > 12:
                    snippets.add(text)
    return snippets


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_guard_catches_a_solution_given_away():
    def ste_round(x):
        """round(x) in value."""
        return x + (x.round() - x).detach()
    snippets = _code_snippets(inspect.getsource(ste_round))
    assert "x + (x.round() - x).detach()" in snippets
    leaky = "the trick: x+(x.round()-x).detach() keeps the gradient"
    assert any(_squeezed(s) in _squeezed(leaky) for s in snippets)


@pytest.mark.parametrize("ex", REAL, ids=lambda e: e.id)
def test_the_first_level_never_gives_the_solution_away(ex):
    first = _squeezed(ex.hint_at(1))
    sources = [inspect.getsource(ex.reference), _master_solution(ex)]
    for snippet in set().union(*(_code_snippets(s) for s in sources if s)):
        assert _squeezed(snippet) not in first, f"{ex.id}: level 1 contains {snippet!r}"


@pytest.mark.parametrize("ex", COURSE, ids=lambda e: e.id)
def test_every_course_exercise_has_a_progressive_hint(ex):
    assert 2 <= len(ex.hints) <= 4, ex.hints
    assert len(set(ex.hints)) == len(ex.hints) and all(h.strip() for h in ex.hints)
    assert "\n" not in "".join(ex.hints)         # one line per level in the notebook


@pytest.mark.parametrize("ex", [e for e in REAL if e.project is None], ids=lambda e: e.id)
def test_a_pass_reads_as_before(monkeypatch, ex):
    """The masters' stored outputs hold these lines: a pass has no hint and the same words. (A
    project's pass lists its rules: test_grading_project.py.)"""
    monkeypatch.setattr(exercises, "_REGISTRY", {e.id: e for e in REAL})
    n = len(ex.cases())
    many = f" on {n} hidden cases" if n > 1 else ""
    evaluate(ex.id, lambda *args: "not an answer")       # a failed attempt before: still no hint
    assert evaluate(ex.id, ex.reference).message == f"✅ {ex.id} ({ex.title}): passed{many}."


def test_the_stored_pass_line_of_notebook_04(monkeypatch):
    monkeypatch.setattr(exercises, "_REGISTRY", {e.id: e for e in REAL})
    r = evaluate("04.choose_group_size", exercises.get_exercise("04.choose_group_size").reference)
    assert r.message == "✅ 04.choose_group_size (the finest groups a memory budget allows): passed on 9 hidden cases."


# --------------------------------------------------------------------------- ask first, explain after
_OPTION = re.compile(r'^\s*[-*]\s*(`?"[a-z]"`?|\*\*[a-z]\*\*)')


def _master_cells(ex: Exercise):
    """The master's cells before the exercise's check cell, solution bodies removed (a learner copy
    shows none of them), and the check cell's index; (None, None) where the master has no check."""
    for path in sorted(NOTEBOOKS.glob(f"{ex.notebook}_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for k, cell in enumerate(cells):
            if cell["cell_type"] == "code" and f'check("{ex.id}"' in "".join(cell["source"]):
                return [(c["cell_type"], _SOLUTION.sub("", "".join(c["source"]))) for c in cells[:k]], k
    return None, None


def _normalized_lines(source: str) -> list[str]:
    """Code lines without comments, blank lines or whitespace: what a reader would recognise."""
    lines = (re.sub(r"\s+", "", re.sub(r"#.*$", "", line)) for line in source.splitlines())
    return [line for line in lines if line]


def _body(source: str) -> str:
    """A function's statements without its def line and docstring (or the source itself)."""
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    body = tree.body[0].body if len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef) else tree.body
    body = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return "\n".join(ast.get_source_segment(source, s) for s in body)


class _AnyName(ast.NodeTransformer):
    def visit_Name(self, node):
        return ast.copy_location(ast.Name(id="_", ctx=node.ctx), node)


def _answer_shapes(source: str, min_nodes: int = 15) -> set[str]:
    """The expressions a reference returns or assigns, of 15 AST nodes or more, with every variable
    name made the same: `(a.argmax(-1) == b.argmax(-1)).float().mean().item()` is the same answer
    whatever the tensors are called."""
    shapes = set()
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return shapes
    for node in ast.walk(tree):
        value = getattr(node, "value", None) if isinstance(node, (ast.Return, ast.Assign)) else None
        if value is not None and sum(1 for _ in ast.walk(value)) >= min_nodes:
            shapes.add(ast.dump(_AnyName().visit(copy.deepcopy(value)), include_attributes=False))
    return shapes


def _code_shapes(source: str, min_nodes: int = 15) -> set[str]:
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {ast.dump(_AnyName().visit(copy.deepcopy(node)), include_attributes=False)
            for node in ast.walk(tree) if isinstance(node, ast.expr)
            and not isinstance(node, (ast.JoinedStr, ast.FormattedValue))
            and sum(1 for _ in ast.walk(node)) >= min_nodes}


def _gives_away(ex: Exercise, cells) -> list[str]:
    bodies = [_body(inspect.getsource(ex.reference)), _master_solution(ex)]
    windows = {"\n".join(lines[k:k + 3]) for lines in map(_normalized_lines, filter(None, bodies))
               for k in range(len(lines) - 2)}
    shapes = set().union(*(_answer_shapes(b) for b in bodies if b))
    found = []
    for k, (kind, source) in enumerate(cells):
        if kind == "code" and re.search(rf"def {ex.name}\(", source):
            continue                                   # the exercise's own cell (its body is stubbed)
        text = "\n".join(_normalized_lines(source))
        found += [f"cell {k} shows {w!r}" for w in windows if w in text]
        if kind == "code" and shapes & _code_shapes(source):
            found.append(f"cell {k} computes the answer's expression")
    return found


def test_the_page_guard_catches_an_answer_shown_before_the_exercise():
    real = {e.id: e for e in REAL}
    ex = real["02.top1_agreement"]
    shown = "same = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()\nprint(same)"
    assert _gives_away(ex, [("code", shown)]) and not _gives_away(ex, [("code", "print(logits.argmax(-1))")])
    three = "bias = 2 ** (exponent_bits - 1) - 1\nsign = -1.0 if (code >> (exponent_bits + mantissa_bits)) & 1 else 1.0\n" \
            "exponent = (code >> mantissa_bits) & (2 ** exponent_bits - 1)"
    assert _gives_away(real["12.decode_e2m1"], [("markdown", f"```python\n{three}\n```")])


@pytest.mark.parametrize("ex", [e for e in REAL if not e.choices and e.project is None], ids=lambda e: e.id)
def test_no_cell_before_the_check_gives_the_answer_away(ex):
    """Ask first, explain after: no cell above an exercise's check (markdown or code, outside the
    solutions) holds three consecutive lines of the reference's body, or computes its answer's
    expression under other names. (A project hands in what the notebook built: the cells above it
    are its answer, by design.)"""
    cells, _ = _master_cells(ex)
    if cells is None:
        pytest.skip(f"{ex.id} has no check in a master notebook")
    assert not _gives_away(ex, cells), f"{ex.id}: {_gives_away(ex, cells)}"


@pytest.mark.parametrize("ex", [e for e in REAL if e.choices], ids=lambda e: e.id)
def test_a_multiple_choice_question_comes_before_its_explanation(ex):
    """The question follows the evidence (the last code cell above it) directly: what the numbers
    mean, and so the answer, is written after the check, never between the evidence and the question."""
    cells, _ = _master_cells(ex)
    if cells is None:
        pytest.skip(f"{ex.id} has no check in a master notebook")
    solution = max(k for k, (kind, src) in enumerate(cells) if kind == "code" and f"def {ex.name}(" in src)
    evidence = max(k for k, (kind, _) in enumerate(cells[:solution]) if kind == "code")
    between = [src for kind, src in cells[evidence + 1:solution] if kind == "markdown"]
    assert len(between) == 1, f"{ex.id}: {len(between)} markdown cells between the evidence and the question"
    question = between[0].lstrip()
    assert question.startswith("### Your turn"), \
        f"{ex.id}: the question must come right after the evidence; found before it: {question[:200]!r}"
    assert sum(bool(_OPTION.match(line)) for line in question.splitlines()) == len(ex.choices)
