"""Exercise checking for learners: `check(exercise_id, answer)` prints one clear verdict.

The specs live in one file per notebook (`nb03_quantization_theory.py`, ...), each a list of
reference functions declared with `@exercise`. `check` runs the learner's function on the hidden
cases (`outcome.call`) and has `verdict.judge` compare the outcomes with the reference, the very
function the grader uses. It never raises, and when the learner's code raises, it reports that
error as the learner's own (their line, not coursekit's internals).

Hints are progressive and come only after a try that did not work. The kernel counts each
exercise's failed attempts (a check whose status is failed or error); the k-th one ends with
level k of the exercise's hint (the last level from then on). A stub ("not done yet"), something
that is not a function, and a pass show no hint; a pass does not reset the count, and
`reset_attempts` starts the hints over. So Run All on a learner copy shows no hint at all.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass

from .compare import clone_args, describe
from .outcome import Handed, call, handed
from .spec import Exercise, Hint, exercise, exercises_in
from .verdict import HINTED, Status, Voice, judge

__all__ = ["check", "evaluate", "reset_attempts", "get_exercise", "list_exercises", "Exercise", "Hint",
           "exercise", "CheckResult"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_HERE)
_REGISTRY: dict[str, Exercise] | None = None
_FAILED_ATTEMPTS: dict[str, int] = {}   # exercise id -> failed attempts in this kernel


def _registry() -> dict[str, Exercise]:
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Exercise] = {}
        for mod in sorted(m.name for m in pkgutil.iter_modules([_HERE]) if m.name.startswith("nb")):
            for ex in exercises_in(importlib.import_module(f"{__name__}.{mod}")):
                if ex.id in found:
                    raise RuntimeError(f"duplicate exercise id {ex.id!r} in {mod}")
                found[ex.id] = ex
        _REGISTRY = found
    return _REGISTRY


def list_exercises(notebook: str | None = None) -> list[Exercise]:
    """All exercises, or those of one notebook ("03")."""
    return [e for e in _registry().values() if notebook is None or e.notebook == notebook]


def get_exercise(exercise_id: str) -> Exercise:
    try:
        return _registry()[exercise_id]
    except KeyError:
        raise KeyError(f"unknown exercise id {exercise_id!r}") from None


@dataclass
class CheckResult:
    exercise_id: str
    status: Status
    message: str
    points: float = 0.0
    max_points: float = 0.0
    hint_level: int = 0      # the level of the hint the message ends with; 0: no hint

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def __str__(self) -> str:
        return self.message


def _is_ours(filename: str) -> bool:
    """A frame of coursekit's own code, which the learner need not see."""
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def reset_attempts(exercise_id: str | None = None) -> None:
    """Forget the failed attempts counted so far, of one exercise or of all: hints start over at
    level 1."""
    if exercise_id is None:
        _FAILED_ATTEMPTS.clear()
    else:
        _FAILED_ATTEMPTS.pop(exercise_id, None)


def evaluate(exercise_id, answer) -> CheckResult:
    """Compare `answer` with the reference on every hidden case. Never raises.

    The result's message is what `check` prints. An attempt that fails or raises counts as one
    more failed attempt of this exercise in this kernel, and its message ends with the hint level
    of that count (see the module's docstring); the status and the points never depend on it.
    """
    try:
        ex = get_exercise(exercise_id)
    except (KeyError, TypeError):
        known = ", ".join(sorted(_registry())) or "none"
        return CheckResult(str(exercise_id), Status.UNKNOWN,
                           f"❓ There is no exercise called {exercise_id!r}. Known exercises: {known}.")
    cases, expected, outcomes = ex.cases(), [], []
    given = handed(answer, is_value=all(len(c) == 0 for c in cases))  # ex.is_value, cases built once
    if given is Handed.FUNCTION:
        for case in cases:  # each side gets its own copy of the arguments (a project has no reference)
            expected.append(None if ex.project is not None else ex.reference(*clone_args(case)))
            outcomes.append(call(answer, clone_args(case), _is_ours))
    what = describe(answer) if given is Handed.NOT_A_FUNCTION else ""
    attempt = _FAILED_ATTEMPTS.get(ex.id, 0) + 1        # the count, should this attempt fail
    verdict = judge(ex, cases, expected, given, outcomes, Voice.NOTEBOOK, what, hint_level=attempt)
    hinted = verdict.status in HINTED
    if hinted:
        _FAILED_ATTEMPTS[ex.id] = attempt
    level = min(attempt, len(ex.hints)) if hinted else 0
    return CheckResult(ex.id, verdict.status, verdict.message, verdict.points, ex.points, level)


def check(exercise_id, answer) -> None:
    """Check an exercise and print the verdict: passed, or what was expected and what you gave
    (and, after a failed attempt, a hint: a nudge first, more concrete with each failed attempt)."""
    try:
        print(evaluate(exercise_id, answer).message)
    except Exception as exc:  # a bug of ours must not look like the learner's fault, nor crash their cell
        print(f"⚠️ The checker itself hit a problem ({type(exc).__name__}: {exc}). "
              f"Your answer was not judged; please report this.")
