"""Scores, computed in the grader's process: one per exercise, and the status of the whole run.

An exercise is scored by `exercises.verdict.judge`, the function `check()` uses in a notebook,
on the outcomes the harness wrote and the reference results the grader computed itself. Only
when no outcome came back (the kernel timed out or died first, the cell never ran, the file
could not be read) does the grader say so itself, with no points.

A submission gets points for every exercise that could be graded, whatever the run's status:
when a cell kills the kernel (memory) or hangs it past an interrupt, a fresh kernel re-runs the
other cells, so the functions defined elsewhere are still graded.
"""

from __future__ import annotations

import os

from ..exercises.verdict import Status, Verdict, Voice, judge
from . import transport
from .preparation import Prepared
from .protocol import read_result
from .results import ExerciseResult, RunStatus
from .sandbox import HarnessState, RunReport

_MEMORY_WORDS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "not enough memory",
                 "out of memory", "bad_alloc", "OutOfMemory")


def score_exercise(prep: Prepared, stem: str, nonce: str, state: HarnessState,
                   detail: str = "") -> ExerciseResult:
    """The result of one exercise, from the harness's file STEM.json when there is one.

    The file counts only when the runner saw the harness cell finish (`HarnessState.DONE`): a file
    left for an exercise whose cell timed out or died was not written by that cell (a learner's
    function, called by an earlier harness cell, could have forged it, nonce and all).
    """
    if state is not HarnessState.DONE or not os.path.exists(stem + ".json"):
        return _no_outcomes(prep, state, detail)
    try:
        found = read_result(prep, stem, nonce)
    except (transport.TransportError, OSError, KeyError, TypeError, ValueError) as exc:
        return _result(prep, Status.INVALID, f"the results could not be read ({str(exc)[:200]}); no points.")
    try:
        verdict = judge(prep.ex, prep.cases, prep.expected, found.handed, found.outcomes, Voice.REPORT,
                        found.function_type, forbidden=found.forbidden)
    except Exception as exc:   # a project's judge (or a spec) failed: the course's bug, said as such
        return _result(prep, Status.INVALID, f"the grader could not judge this ({type(exc).__name__}: "
                                             f"{str(exc)[:200]}); no points: please tell the instructor.")
    return _from_verdict(prep, verdict)


def _no_outcomes(prep: Prepared, state: HarnessState, detail: str) -> ExerciseResult:
    if state is HarnessState.TIMEOUT:
        return _result(prep, Status.TIMEOUT, "your function ran out of time on the hidden cases.")
    if state in (HarnessState.MEMORY, HarnessState.DIED):
        why = " (out of memory)." if state is HarnessState.MEMORY else "."
        return _result(prep, Status.ERROR,
                       f"the kernel died while running your function on the hidden cases{why}")
    if state is HarnessState.ERROR:
        return _result(prep, Status.ERROR, f"the hidden cases could not be run ({detail}).")
    return _result(prep, Status.NOT_RUN, "not graded: the notebook did not get as far as the hidden cases.")


def not_run(prep: Prepared, why: str) -> ExerciseResult:
    """The result of an exercise of a notebook that could not be run at all."""
    return ExerciseResult(prep.ex.id, 0.0, float(prep.ex.points), Status.NOT_RUN,
                          f"{prep.ex.id}: not graded: {why}", 0, len(prep.cases), prep.ex.hint, prep.ex.title)


def _result(prep: Prepared, status: Status, says: str) -> ExerciseResult:
    ex = prep.ex
    head = ex.id + (f" ({ex.title})" if ex.title else "")
    return ExerciseResult(ex.id, 0.0, float(ex.points), status, f"{head}: {says}", 0, len(prep.cases),
                          ex.hint, ex.title)


def _from_verdict(prep: Prepared, verdict: Verdict) -> ExerciseResult:
    ex = prep.ex
    cases = len(prep.cases) if ex.project is None else 0   # a project's message lists its rules instead
    return ExerciseResult(ex.id, verdict.points, float(ex.points), verdict.status, verdict.message,
                          min(verdict.cases_passed, cases), cases, ex.hint, ex.title, verdict.measures,
                          verdict.marks)


def run_status(run: RunReport) -> tuple[RunStatus, str]:
    """The status of the whole run and the sentence that explains it, worst first."""
    report = run.report
    errors = report.get("cell_errors") or []
    if run.killed:
        return RunStatus.TIMEOUT, "the submission ran out of time and was stopped."
    if not report:
        return RunStatus.ERROR, f"the grader's runner failed: {run.log_tail[-300:].strip() or 'no report'}"
    if report.get("timed_out"):
        return RunStatus.TIMEOUT, "a cell ran out of time; the cells after it were not run."
    if report.get("memory_killed") or any(_is_memory_error(e) for e in errors) \
            or any(run.harness(h)[0] is HarnessState.MEMORY for h in report.get("harness") or {}):
        return RunStatus.MEMORY, "the notebook used more memory than allowed."
    if report.get("runner_error"):
        return RunStatus.ERROR, f"the notebook could not be run: {report['runner_error'][:300]}"
    if report.get("kernel_deaths"):
        return RunStatus.ERROR, "the kernel died; the cell that killed it was skipped."
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return RunStatus.ERROR, (f"cell {e.get('cell')} raised {e.get('ename')}: "
                                 f"{str(e.get('evalue'))[:200]}{more}.")
    return RunStatus.OK, "the notebook ran to the end."


def _is_memory_error(error: dict) -> bool:
    return any(w in f"{error.get('ename')} {error.get('evalue')}" for w in _MEMORY_WORDS)
