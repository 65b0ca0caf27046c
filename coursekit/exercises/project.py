"""A project: an exercise graded by rules on what the learner made, not against a reference.

Most exercises have one right answer per hidden case, so the grader compares. A capstone has none:
the learner hands in a thing (a quantized model's file, with their predictions about it), and it
earns points rule by rule: the file loads, it fits the budget, the prediction was exact, it beats
a baseline, by more than the noise. Partial credit is the point: each rule says what it measured.

A project is still an `Exercise` (same id, name, title, points, hint, same `check()` and grader);
its spec adds `project=Project(judge)`. The learner's function takes no argument; the harness
calls it once, carries what it returned to the grader's process (tensors, numbers, strings, lists
and tuples: a file travels as its bytes, a uint8 tensor, never as a path the grader would read),
and there `judge(value)` returns an `Assessment`. `check()` in a notebook runs the same judge, so
the learner sees the rules before handing in. The grader never runs a project's reference
solution (it is one answer among many, not the answer); the tests check that it earns every point.

A judge raises `HandInError` when the value is not what the exercise asks for (wrong type,
wrong length): the learner is told why, with no points. Anything else it raises is a bug of the
course's, not the learner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..checks import fail

__all__ = ["Project", "Rule", "Assessment", "HandInError"]


class HandInError(ValueError):
    """What the learner handed in is not what the project asks for (the message says what is)."""


@dataclass(frozen=True)
class Rule:
    """One rule, judged: what it asks, its points, whether it passed and what was measured."""
    asks: str
    points: float
    passed: bool
    measured: str = ""

    @property
    def earned(self) -> float:
        return float(self.points) if self.passed else 0.0

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        said = f": {self.measured}" if self.measured else ""
        return f"{mark} {self.earned:g}/{self.points:g} {self.asks}{said}"


@dataclass(frozen=True)
class Assessment:
    """Every rule of a project, judged, and the measurements behind them.

    measures: numbers worth a column in grades.csv (e.g. {"weight MB": 75.8, "perplexity": 71.1}).
    marks: reference points for the class plot, {label: (x, y)} in the units of `Project.plot`
        (e.g. the uniform baseline the rules compare with; (x, None) draws a limit on x alone, a
        budget); the same for every submission.
    """
    rules: tuple[Rule, ...]
    measures: dict = field(default_factory=dict)
    marks: dict = field(default_factory=dict)

    @property
    def points(self) -> float:
        return sum(r.earned for r in self.rules)

    @property
    def max_points(self) -> float:
        return float(sum(r.points for r in self.rules))

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)


@dataclass(frozen=True)
class Project:
    """How a project exercise is judged.

    judge: a function of what the learner's function returned, giving an `Assessment`; it
        raises `HandInError` for a value of the wrong kind. Its rules' points must add up to the
        exercise's points.
    plot: two keys of the assessment's `measures`, (x, y): the class summary plots every
        submission's y against its x (e.g. ("weight MB", "perplexity")), with the `marks`.
    version: changed whenever the rules change, so that a stored grade is not reused.
    """
    judge: Callable[[object], Assessment]
    plot: tuple = ()
    version: str = "1"

    def __post_init__(self):
        if not callable(self.judge):
            fail("Project(judge)", "a function of the learner's value that returns an Assessment",
                 type(self.judge).__name__, TypeError)
        if self.plot and not (isinstance(self.plot, tuple) and len(self.plot) == 2
                              and all(isinstance(k, str) for k in self.plot)):
            fail("Project(plot)", "two names of measures, (x, y)", repr(self.plot), TypeError)
