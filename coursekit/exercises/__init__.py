"""Exercise checking for learners: `check(exercise_id, answer)` prints one clear verdict.

The specs live in one file per notebook (`nb03_quantization_theory.py`, ...), each with a list
`EXERCISES`. `check` runs the learner's function on the hidden cases and compares it with the
reference; it never raises, and when the learner's code raises, it reports that error as the
learner's own (their line, not coursekit's internals).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import traceback
from dataclasses import dataclass

from .spec import Exercise, clone_args, compare, describe

__all__ = ["check", "evaluate", "get_exercise", "list_exercises", "Exercise", "CheckResult"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_HERE)
_REGISTRY: dict[str, Exercise] | None = None


def _registry() -> dict[str, Exercise]:
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Exercise] = {}
        for mod in sorted(m.name for m in pkgutil.iter_modules([_HERE]) if m.name.startswith("nb")):
            for ex in importlib.import_module(f"{__name__}.{mod}").EXERCISES:
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
    status: str          # "passed", "failed", "not_done", "error" (the learner's code raised), "unknown"
    message: str
    points: float = 0.0
    max_points: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        return self.message


def _learner_frames(exc: BaseException) -> str:
    """Where in the learner's code the error came from, leaving out coursekit's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    line = f" -> {f.line.strip()}" if f.line else ""
    return f" (line {f.lineno}{line})"


def evaluate(exercise_id, answer) -> CheckResult:
    """Compare `answer` with the reference on every hidden case. Never raises."""
    try:
        ex = get_exercise(exercise_id)
    except (KeyError, TypeError):
        known = ", ".join(sorted(_registry())) or "none"
        return CheckResult(str(exercise_id), "unknown",
                           f"❓ There is no exercise called {exercise_id!r}. Known exercises: {known}.")
    head = f"{ex.id}" + (f" ({ex.title})" if ex.title else "")
    hint = f"\n   Hint: {ex.hint}" if ex.hint else ""

    def result(status, text, points=0.0):
        return CheckResult(ex.id, status, text, points, ex.points)

    if answer is None or answer is Ellipsis:
        return result("not_done", f"⏳ {head}: not done yet — there is no answer to check.{hint}")
    if not callable(answer) and not ex.is_value:
        return result("failed", f"❌ {head}: pass the function `{ex.name}` itself (not its result), "
                                f"got {describe(answer)}.{hint}")

    cases = ex.cases()
    for i, case in enumerate(cases, start=1):
        expected = ex.reference(*clone_args(case))
        where = f" on hidden case {i} of {len(cases)}" if len(cases) > 1 else ""
        if callable(answer):
            args = clone_args(case)
            try:
                got = answer(*args)
            except NotImplementedError:
                return result("not_done", f"⏳ {head}: not done yet — replace `raise NotImplementedError` "
                                          f"with your code.{hint}")
            except Exception as exc:  # the learner's code failed: say so, in their terms
                shown = f"inputs {describe(list(case))}; " if case else ""
                return result("error", f"❌ {head}: your code raised {type(exc).__name__}: {exc}"
                                       f"{_learner_frames(exc)}{where}; {shown}".rstrip("; ") + f".{hint}")
        else:
            got = answer
        try:
            problem = compare(got, expected, ex)
        except Exception:
            problem = f"could not compare your result, {describe(got)}, with the expected {describe(expected)}"
        if problem:
            shown = f" (inputs {describe(list(case))})" if case else ""
            return result("failed", f"❌ {head}: failed{where}{shown}: {problem}.{hint}")
    n = f" on {len(cases)} hidden cases" if len(cases) > 1 else ""
    return result("passed", f"✅ {head}: passed{n}.", float(ex.points))


def check(exercise_id, answer) -> None:
    """Check an exercise and print the verdict: passed, or what was expected and what you gave."""
    try:
        print(evaluate(exercise_id, answer).message)
    except Exception as exc:  # a bug of ours must not look like the learner's fault, nor crash their cell
        print(f"⚠️ The checker itself hit a problem ({type(exc).__name__}: {exc}). "
              f"Your answer was not judged; please report this.")
