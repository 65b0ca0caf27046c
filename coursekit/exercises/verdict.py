"""One verdict for one exercise: the learner's outcomes on the hidden cases, against the reference.

`check()` (in the learner's kernel) and the grader (in its own process, on the outcomes its
harness carried back) both call `judge`, so the same answer gets the same status, points and
sentence in a notebook and in a grade. Only the frame of the sentence follows the reader: a
notebook line starts with an emoji and, after a failure or an error, ends with one level of the
hint (`hint_level`: `check` passes the number of this exercise's failed attempts, this one
included, so a first failure shows the nudge and later ones more concrete levels). A stub ("not
done yet"), something that is not a function, and a pass show no hint. A report never has the
hint in its sentence: it keeps it apart (`Exercise.hint`, which as text is the first level: the
feedback page shows the nudge only) and adds the expected and the returned value on lines of
their own. The hint never changes a status, the points or the count of cases passed.

The first hidden case that does not pass decides the status and the sentence; the exercise is
worth its points only when every case passes, unless its spec says `partial=True`: then it is
worth its points in proportion to the cases passed. A function that called one of the exercise's
`forbid`den coursekit functions (the grader's harness tells) scores 0, whatever it returned.

A project (`Exercise.project`) has no reference to compare with: its judge scores what the
function returned rule by rule (`project.Assessment`), one line per rule, points rule by rule;
it passes when every rule does. Its measurements travel on the verdict (`measures`, `marks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum

from .compare import compare, describe
from .outcome import Handed, Kind, Outcome
from .project import HandInError
from .spec import Exercise

__all__ = ["Status", "Voice", "Verdict", "judge", "HINTED"]


class Status(StrEnum):
    """How an exercise went (the values are what grades.json and feedback pages say)."""
    PASSED = "passed"
    FAILED = "failed"          # a result differs from the reference
    ERROR = "error"            # the learner's code raised (or, in the grader, the kernel died)
    NOT_DONE = "not_done"      # the stub still raises NotImplementedError, or no answer was given
    MISSING = "missing"        # no function to call under the exercise's name
    # Set by the grader when no outcome came back at all:
    TIMEOUT = "timeout"
    NOT_RUN = "not_run"
    INVALID = "invalid"        # the results could not be read
    FORBIDDEN = "forbidden"    # the function called a coursekit function that implements the answer
    # Set by check() for an exercise id it does not know:
    UNKNOWN = "unknown"


class Voice(Enum):
    NOTEBOOK = "notebook"      # what check() prints
    REPORT = "report"          # what grades.json and the feedback pages say


@dataclass(frozen=True)
class Verdict:
    status: Status
    points: float
    cases_passed: int
    message: str
    measures: dict = field(default_factory=dict)   # a project's measurements (grades.csv)
    marks: dict = field(default_factory=dict)      # a project's reference points (the class plot)


def judge(ex: Exercise, cases: list, expected: list, handed: Handed, outcomes: list[Outcome],
          voice: Voice, what: str = "", hint_level: int = 0, forbidden: tuple[str, ...] = ()) -> Verdict:
    """The verdict on `outcomes` (one per case of `cases`, whose reference results are `expected`).

    `handed` says whether there was a function to call at all; `what` describes what stood there
    instead when it was not a function (check() shows the value, the grader only its type).
    `hint_level` is the level of the hint a notebook line ends with if the verdict is a failure or
    an error (0: none); it changes nothing else. `forbidden` lists the forbidden functions the
    learner's function called (the grader's harness records them).
    """
    if handed is not Handed.FUNCTION:
        status, body = _nothing_to_call(ex, handed, voice, what)
        return _verdict(ex, voice, status, body, passed=0, hint_level=hint_level)
    if ex.project is not None:
        return _project(ex, outcomes[0], voice, hint_level, forbidden)
    passed, first = 0, None
    for i, (case, want, outcome) in enumerate(zip(cases, expected, outcomes), start=1):
        problem = _problem(ex, i, len(cases), case, want, outcome, voice)
        passed += problem is None
        first = first or problem
    if forbidden:
        names = ", ".join(f"`{n}`" for n in forbidden)
        body = (f"your function calls {names}, the course library's own implementation of this exercise; "
                f"the exercise asks you to write it yourself, so it scores 0 (whatever it returned).")
        return _verdict(ex, voice, Status.FORBIDDEN, body, passed=passed, hint_level=hint_level)
    if first is None:
        many = f" on {len(cases)} hidden cases" if len(cases) > 1 else ""
        return _verdict(ex, voice, Status.PASSED, f"passed{many}.", passed)
    return _verdict(ex, voice, *first, passed=passed, hint_level=hint_level, total=len(cases))


def _nothing_to_call(ex: Exercise, handed: Handed, voice: Voice, what: str) -> tuple[Status, str]:
    if handed is Handed.NOTHING:
        return Status.NOT_DONE, "not done yet — there is no answer to check."
    if handed is Handed.MISSING:
        return Status.MISSING, (f"there is no function `{ex.name}` in your notebook. Keep the name "
                                f"`{ex.name}` and keep its cell a code cell.")
    if voice is Voice.NOTEBOOK:  # the learner passed something else to check()
        return Status.MISSING, f"pass the function `{ex.name}` itself (not its result), got {what}."
    return Status.MISSING, f"`{ex.name}` is a {what}, not a function."  # the notebook's name holds it


def _problem(ex: Exercise, i: int, n: int, case: tuple, want, outcome: Outcome,
             voice: Voice) -> tuple[Status, str] | None:
    """None when this case passed; otherwise its status and the sentence that explains it."""
    where = f" on hidden case {i} of {n}" if n > 1 else ""
    if outcome.kind is Kind.NOT_DONE:
        return Status.NOT_DONE, "not done yet — replace `raise NotImplementedError` with your code."
    if outcome.kind is Kind.RAISED:
        line = f" ({outcome.where})" if outcome.where else ""
        shown = f"inputs {describe(list(case))}; " if case else ""
        return Status.ERROR, (f"your code raised {outcome.error}: {outcome.message}{line}{where}; "
                              f"{shown}".rstrip("; ") + ".")
    got = outcome.value
    try:
        difference = compare(got, want, ex)
    except Exception:
        difference = f"could not compare your result, {describe(got)}, with the expected {describe(want)}"
    if difference is None:
        return None
    shown = f" (inputs {describe(list(case))})" if case else ""
    body = f"failed{where}{shown}: {difference}."
    if voice is Voice.REPORT:
        body += f"\n  expected: {describe(want)}\n  got:      {describe(got)}"
    return Status.FAILED, body


def _project(ex: Exercise, outcome: Outcome, voice: Voice, hint_level: int,
             forbidden: tuple[str, ...]) -> Verdict:
    """A project's verdict: its judge's rules, one line each, and the points of those that passed."""
    if outcome.kind is not Kind.RETURNED or forbidden:
        problem = _problem(ex, 1, 1, (), None, outcome, voice) if not forbidden else None
        if problem is None:
            names = ", ".join(f"`{n}`" for n in forbidden)
            problem = (Status.FORBIDDEN, f"your function calls {names}, which the project asks you to "
                                         f"do yourself, so it scores 0.")
        return _verdict(ex, voice, *problem, passed=0, hint_level=hint_level)
    try:
        assessment = ex.project.judge(outcome.value)
    except HandInError as exc:
        return _verdict(ex, voice, Status.FAILED, f"what your function returned cannot be judged: {exc}",
                        passed=0, hint_level=hint_level)
    if assessment.max_points != float(ex.points):   # the spec's mistake, not the learner's
        raise RuntimeError(f"{ex.id}: its rules are worth {assessment.max_points:g} points, "
                           f"the exercise {ex.points}")
    status = Status.PASSED if assessment.passed else Status.FAILED
    body = (f"{assessment.points:g} of {assessment.max_points:g} points, rule by rule:\n"
            + "\n".join("  " + r.line() for r in assessment.rules))
    made = _verdict(ex, voice, status, body, passed=int(assessment.passed), hint_level=hint_level)
    return Verdict(made.status, assessment.points, made.cases_passed, made.message,
                   dict(assessment.measures), {k: list(v) for k, v in assessment.marks.items()})


#: The statuses after which a notebook line shows a hint: the learner tried, and it did not work.
HINTED = frozenset({Status.FAILED, Status.ERROR, Status.FORBIDDEN})


def _verdict(ex: Exercise, voice: Voice, status: Status, body: str, passed: int,
             hint_level: int = 0, total: int = 0) -> Verdict:
    if status is Status.PASSED:
        points = float(ex.points)
    elif ex.partial and total and status in (Status.FAILED, Status.ERROR, Status.NOT_DONE):
        points = round(float(ex.points) * passed / total, 4)
    else:
        points = 0.0
    head = ex.id + (f" ({ex.title})" if ex.title else "")
    if voice is Voice.REPORT:
        return Verdict(status, points, passed, f"{head}: {body}")
    mark = {Status.PASSED: "✅", Status.NOT_DONE: "⏳"}.get(status, "❌")
    hint = _hint(ex, hint_level) if status in HINTED else ""
    return Verdict(status, points, passed, f"{mark} {head}: {body}{hint}")


def _hint(ex: Exercise, level: int) -> str:
    """The hint's lines at `level`, and, for a hint of several levels, which one this is."""
    text, n = ex.hint_at(level), len(ex.hints)
    if not text:
        return ""
    if n == 1:
        return f"\n   Hint: {text}"
    k = min(level, n)
    more = "; the next failed check shows a more concrete one" if k < n else ", the last"
    return f"\n   Hint: {text}\n   (hint {k} of {n}{more})"
