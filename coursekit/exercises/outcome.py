"""What the learner handed in, and what one call of their function did on one hidden case.

`check()` calls the learner's function in the learner's kernel; the grader's harness calls it in a
sandboxed kernel and carries the outcomes back to the grader's process. Both build the outcomes
with the two functions here, and both hand them to `verdict.judge`: the same answer gets the
same verdict in a notebook and in a grade.

This module imports only the standard library, and nothing from coursekit: the grader executes
its source text inside the learner's kernel, where an imported coursekit could have been patched
by the learner's own cells.
"""

import traceback
from dataclasses import dataclass
from enum import StrEnum


class Handed(StrEnum):
    """What stands where the learner's function should be (the values travel in result files)."""
    FUNCTION = "ok"                  # something to call; for a value exercise, the value itself
    NOTHING = "no_answer"            # None or ...: not done yet
    NOT_A_FUNCTION = "not_callable"  # e.g. the function's result instead of the function
    MISSING = "missing"              # no such name in the notebook (only the grader can tell)


class Kind(StrEnum):
    """How one call ended (the values travel in result files)."""
    RETURNED = "ok"
    RAISED = "raised"
    NOT_DONE = "not_implemented"     # the stub's `raise NotImplementedError`


@dataclass(frozen=True)
class Outcome:
    """One call of the learner's function on one hidden case."""
    kind: Kind
    value: object = None   # what it returned (RETURNED)
    error: str = ""        # the exception's type name (RAISED)
    message: str = ""      # str() of the exception (RAISED)
    where: str = ""        # the learner's line that raised: "line 3 -> return x.foo()" (RAISED)


def handed(answer, is_value: bool) -> Handed:
    """Whether `answer` is something to run on the hidden cases."""
    if answer is None or answer is Ellipsis:
        return Handed.NOTHING
    if callable(answer) or is_value:
        return Handed.FUNCTION
    return Handed.NOT_A_FUNCTION


def call(answer, args: tuple, is_ours) -> Outcome:
    """Run `answer` on one hidden case; whatever the learner's code raises becomes an outcome.

    `is_ours(filename)` tells the checker's own frames from the learner's, so that `where` names
    the learner's line. Only KeyboardInterrupt passes through: it is how a learner, or the
    grader's time limit, stops a function that does not return.
    """
    try:
        return Outcome(Kind.RETURNED, answer(*args) if callable(answer) else answer)
    except NotImplementedError:
        return Outcome(Kind.NOT_DONE)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: the learner's code ended, the check goes on
        return Outcome(Kind.RAISED, error=type(exc).__name__, message=str(exc), where=_where(exc, is_ours))


def _where(exc: BaseException, is_ours) -> str:
    """The last frame of the traceback that is the learner's, as "line N -> source"."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_ours(f.filename)]
    if not frames:
        return ""
    f = frames[-1]
    return f"line {f.lineno}" + (f" -> {f.line.strip()}" if f.line else "")
