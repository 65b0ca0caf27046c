"""The grader's side of the harness: the cell it sends into the kernel, and the result it reads back.

For every exercise the grader writes the hidden cases to files (transport format), and sends a
code cell that executes the harness's sources (outcome.py, transport.py, harness.py) in a
namespace of their own and calls `run_exercise`. Everything the cell leaves behind is data:
`read_result` accepts a result file only when it has exactly the expected shape, the run's
random nonce and the exercise's id, and turns it into the same `Outcome`s `check()` builds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..exercises import outcome
from ..exercises.outcome import Handed, Kind, Outcome
from . import forbid, harness, transport
from .preparation import Prepared

HARNESS_FILE = "<coursekit-grader>"  # the file name the harness's frames carry in tracebacks
_SOURCES = tuple(Path(m.__file__).read_text(encoding="utf-8") for m in (outcome, transport, forbid, harness))
_RECORD_KEYS = {Kind.RETURNED: {"r", "value"}, Kind.NOT_DONE: {"r"},
                Kind.RAISED: {"r", "type", "message", "where"}}


def harness_cell(prep: Prepared, nonce: str, cases_stem: str, out_stem: str) -> str:
    """Write the exercise's hidden cases to CASES_STEM.*; return the code cell that grades it."""
    Path(cases_stem + ".json").write_bytes(prep.cases_json)
    if prep.cases_tensors is not None:
        Path(cases_stem + ".safetensors").write_bytes(prep.cases_tensors)
    args = dict(name=prep.ex.name, is_value=prep.ex.is_value, cases_stem=cases_stem, out_stem=out_stem,
                nonce=nonce, exercise=prep.ex.id, harness_file=HARNESS_FILE, forbid=prep.forbid)
    fn = f"_coursekit_grade_{nonce[:12]}"
    return (f"def {fn}(_sources={_SOURCES!r}, _args={args!r}):\n"
            f"    _ns = {{'__name__': '_coursekit_harness'}}\n"
            f"    for _src in _sources:\n"
            f"        exec(compile(_src, {HARNESS_FILE!r}, 'exec'), _ns)\n"
            f"    _ns['run_exercise'](globals(), **_args)\n"
            f"try:\n    {fn}()\nfinally:\n    del {fn}\n")


@dataclass
class KernelAnswer:
    """What the harness found under the exercise's name, and the outcome of every hidden case."""
    handed: Handed
    function_type: str       # the type found instead of a function (Handed.NOT_A_FUNCTION)
    outcomes: list[Outcome]
    forbidden: tuple[str, ...] = ()   # forbidden coursekit functions the learner's function called


def read_result(prep: Prepared, stem: str, nonce: str) -> KernelAnswer:
    """The harness's result file for one exercise, checked strictly; raises TransportError."""
    doc = transport.load_json(stem + ".json")
    keys = {"format", "nonce", "exercise", "function", "function_type", "cases", "tensors", "forbidden"}
    if set(doc) != keys or doc["format"] != transport.FORMAT or doc["nonce"] != nonce \
            or doc["exercise"] != prep.ex.id:
        raise transport.TransportError("the result file does not belong to this run")
    given = _member(Handed, doc["function"], "function field")
    if not isinstance(doc["function_type"], str):
        raise transport.TransportError("bad function field")
    tkeys = doc["tensors"]
    if not isinstance(tkeys, list) or not all(isinstance(k, str) for k in tkeys) \
            or len(set(tkeys)) != len(tkeys):
        raise transport.TransportError("bad tensor list")
    if not tkeys and os.path.exists(stem + ".safetensors"):
        raise transport.TransportError("unexpected tensor file")
    tensors = transport.load_tensors(stem + ".safetensors", tkeys)
    records = doc["cases"]
    n = len(prep.cases) if given is Handed.FUNCTION else 0
    if not isinstance(records, list) or len(records) != n:
        raise transport.TransportError(f"expected {n} case results, found "
                                       f"{len(records) if isinstance(records, list) else 'none'}")
    used: set = set()
    outcomes = [_outcome(record, tensors, used) for record in records]
    if used != set(tkeys):
        raise transport.TransportError("tensors in the file that no result uses")
    called = doc["forbidden"]
    if not isinstance(called, list) or not set(called) <= set(prep.ex.forbid):
        raise transport.TransportError("bad forbidden list")
    return KernelAnswer(given, doc["function_type"], outcomes, tuple(sorted(set(called))))


def _outcome(record, tensors: dict, used: set) -> Outcome:
    """One case's record as an Outcome; anything but the exact shape of its kind is refused."""
    kind = _member(Kind, record.get("r") if isinstance(record, dict) else None, "case result")
    if set(record) != _RECORD_KEYS[kind]:
        raise transport.TransportError("bad case result")
    if kind is Kind.RETURNED:
        return Outcome(Kind.RETURNED, transport.decode(record["value"], tensors, used=used))
    if kind is Kind.RAISED:
        if not all(isinstance(record[k], str) and len(record[k]) <= 1000
                   for k in ("type", "message", "where")):
            raise transport.TransportError("bad case result")
        return Outcome(Kind.RAISED, error=record["type"], message=record["message"], where=record["where"])
    return Outcome(Kind.NOT_DONE)


def _member(enum, value, what: str):
    """`value` as a member of `enum` (a StrEnum), or TransportError."""
    try:
        return enum(value)
    except ValueError:
        raise transport.TransportError(f"bad {what}") from None
