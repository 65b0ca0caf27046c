"""What an exercise is, and how a spec file declares one: a decorator on its reference solution.

An exercise asks the learner to write a function. Its spec holds the reference solution, hidden
cases (argument tuples, built by a seeded function so they are the same everywhere), a tolerance,
points and a hint. The learner-facing `check`, the release tool and the grader all read these specs;
none of them trusts what a learner's kernel says about itself.

A hint comes in levels, each more concrete than the one before: a nudge first (what to think
about, which quantity matters), the formula or the exact call only at the last level. `check`
shows level k after the k-th failed attempt (see `Hint`); a plain string is a one-level hint.

A spec file (`nbNN_topic.py`) is a list of reference functions, each declared once:

    @exercise(title="does it fit on the GPU?", cases=_fits_cases,
              hint=("a nudge: what to think about ...", "more concrete ...", "the formula ..."))
    def fits_on_gpu(n_params, bits, gpu_gb):
        ...

The id ("04.fits_on_gpu") and the name of the function the learner completes ("fits_on_gpu")
come from where and how the reference is written, so they cannot disagree with it.

A "value" exercise is a function with no arguments: its one hidden case is the empty tuple.
`check` also accepts the plain value for those.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Sequence

import torch

from ..checks import fail

__all__ = ["Exercise", "Hint", "exercise", "exercises_in", "seeded"]

_SPEC_MODULE = re.compile(r"nb([0-9]{2})_\w+")


class Hint(str):
    """A hint in levels, each more concrete than the one before.

    Level 1 is a nudge that never gives the formula or the code (it may name the quantity that
    matters, the trap, the edge case); the last level may give the formula or the exact call.
    `check` shows level 1 after the first failed attempt at an exercise in a kernel, level 2 after
    the second, and so on; past the last level it keeps showing the last.

    As a string, a Hint is its first level. That is what everything that reads `Exercise.hint` as
    text shows, the grader's feedback page and grades.json among them: a feedback page lists the
    hint of every exercise that did not pass, answered or not, so it gets the nudge, never the
    solution. `levels` holds them all.
    """

    levels: tuple[str, ...]

    def __new__(cls, *levels: str) -> "Hint":
        if not levels or not all(isinstance(level, str) and level.strip() for level in levels):
            fail("Hint(...)", "one or more non-empty strings, the nudge first", repr(levels))
        self = super().__new__(cls, levels[0])
        self.levels = tuple(levels)
        return self

    def __repr__(self) -> str:
        return f"Hint{self.levels!r}"


@dataclass(frozen=True)
class Exercise:
    """One exercise of one notebook.

    id:         "NN.short_name", NN the notebook number (e.g. "03.dequantize").
    name:       the function the learner completes in the notebook (the grader calls it by name).
    reference:  the reference solution, same signature as the learner's function.
    cases:      a zero-argument function returning the hidden cases, a list of argument tuples
                (tensors, numbers, bools, strings, None). Include edge cases.
    hint:       a plain string (a one-level hint) or a sequence of levels, the nudge first; a
                sequence becomes a `Hint`, whose text is its first level. `hints` lists the levels.
    atol, rtol: tolerance for floating-point results; integers, bools and strings compare exactly.
    check_dtype: whether a tensor result must have the reference's dtype.
    partial:    False (the default): the points only when every hidden case passes. True: points
                in proportion to the hidden cases passed.
    forbid:     dotted names of coursekit functions that implement the answer, e.g.
                ("coursekit.quant.linear_quantize",). The grader scores 0 a function that calls
                one of them while it runs on the hidden cases (`check` in a notebook does not look).
    choices:    for a multiple-choice question (a value exercise whose answer is one of these
                strings): a wrong choice is told it is wrong, never which one is right, and an
                answer outside the choices is told what the choices are.
    project:    a `project.Project`: the exercise is judged by rules on what the learner's function
                (no arguments) returns, not against the reference, which grading never runs
                (`project` says more); points are partial, rule by rule.
    """

    id: str
    name: str
    reference: Callable
    cases: Callable[[], list] = field(default=lambda: [()])
    title: str = ""
    hint: str | Sequence[str] = ""
    points: int = 1
    atol: float = 1e-5
    rtol: float = 1e-4
    check_dtype: bool = True
    partial: bool = False
    forbid: Sequence[str] = ()
    choices: Sequence[str] = ()
    project: object = None

    def __post_init__(self):
        if not isinstance(self.hint, str):       # levels: as text, the hint is the first one
            object.__setattr__(self, "hint", Hint(*self.hint))
        if not isinstance(self.partial, bool):
            fail(f"Exercise {self.id}: partial", "True or False", repr(self.partial))
        forbid = (self.forbid,) if isinstance(self.forbid, str) else tuple(self.forbid)
        for name in forbid:
            if not (isinstance(name, str) and re.fullmatch(r"coursekit(\.[A-Za-z_][A-Za-z0-9_]*)+", name)):
                fail(f"Exercise {self.id}: forbid", "dotted names of coursekit functions, e.g. "
                     "'coursekit.quant.linear_quantize'", repr(name))
        object.__setattr__(self, "forbid", forbid)
        if self.project is not None:
            from .project import Project
            if not isinstance(self.project, Project):
                fail(f"Exercise {self.id}: project", "a coursekit.exercises.project.Project",
                     type(self.project).__name__, TypeError)
            if any(len(c) for c in self.cases()):
                fail(f"Exercise {self.id}: cases", "[()] for a project (its function takes no argument)",
                     "cases with arguments")

    @property
    def hints(self) -> tuple[str, ...]:
        """The levels of the hint, the nudge first; () when there is no hint."""
        if isinstance(self.hint, Hint):
            return self.hint.levels
        return (self.hint,) if self.hint else ()

    def hint_at(self, level: int) -> str:
        """The hint to show at `level` (1 = the first): past the last level, the last; "" for none."""
        hints = self.hints
        return hints[min(level, len(hints)) - 1] if hints and level >= 1 else ""

    @property
    def notebook(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def is_value(self) -> bool:
        return all(len(c) == 0 for c in self.cases())


def exercise(**metadata) -> Callable[[Callable], Callable]:
    """Declare the decorated function as the reference solution of an exercise.

    `metadata` are the other fields of `Exercise` (cases, title, hint, points, atol, rtol,
    check_dtype, partial, forbid); `hint` is a string or a tuple of levels, the nudge first. The id is "NN.<function name>", NN from the spec module `nbNN_topic`. The
    function itself is returned unchanged (other specs and hidden cases may call it), carrying
    its `Exercise` as `.exercise`.
    """
    def declare(reference: Callable) -> Callable:
        module = reference.__module__.rsplit(".", 1)[-1]
        found = _SPEC_MODULE.fullmatch(module)
        if found is None:
            fail(f"@exercise on {reference.__name__}", "a spec module named nbNN_topic", repr(module))
        ex_id = f"{found.group(1)}.{reference.__name__}"
        reference.exercise = Exercise(ex_id, reference.__name__, reference, **metadata)
        return reference
    return declare


def exercises_in(module: ModuleType) -> list[Exercise]:
    """The exercises a spec module declares, in the order it declares them.

    Those listed in `EXERCISES` (how a spec without the decorator declares them, e.g. one passed
    to `coursekit grade --spec-module`) come first, then the module's decorated references.
    """
    listed = list(getattr(module, "EXERCISES", []))
    declared = [f.exercise for f in vars(module).values()
                if inspect.isfunction(f) and f.__module__ == module.__name__
                and isinstance(getattr(f, "exercise", None), Exercise) and f.exercise.reference is f]
    return listed + list(dict.fromkeys(declared))  # a reference bound to two names counts once


def seeded(seed: int) -> torch.Generator:
    """A generator of its own for a spec's hidden cases: the same cases every call, whatever the
    learner's notebook did to the global random state."""
    return torch.Generator().manual_seed(seed)
