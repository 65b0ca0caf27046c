"""An exercise made ready to grade: its hidden cases, packed for the kernel, and the reference results.

Both are built once per batch, in the grader's process, from the spec: not from what a
submission's cells mention, and never from anything the learner's kernel says. The fingerprint
changes whenever the cases, the reference results or the scoring rules change, so a stored
result is reused only when it would be graded the same way again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass

from ..exercises.compare import clone_args
from ..exercises.spec import Exercise, exercises_in
from . import forbid, transport


def load_registry(spec_modules: list[str] | None = None) -> dict[str, Exercise]:
    """Exercises by id: the course's own, or those the given modules declare."""
    if not spec_modules:
        from ..exercises import list_exercises
        return {e.id: e for e in list_exercises()}
    found: dict[str, Exercise] = {}
    for name in spec_modules:
        for ex in exercises_in(importlib.import_module(name)):
            if ex.id in found:
                raise ValueError(f"duplicate exercise id {ex.id!r} in {name}")
            found[ex.id] = ex
    return found


@dataclass
class Prepared:
    """An exercise with its hidden cases and reference results, built once per batch."""
    ex: Exercise
    cases: list
    expected: list
    cases_json: bytes
    cases_tensors: bytes | None
    fingerprint: str
    forbid: list = None       # [dotted, module, file, qualname] per forbidden function (forbid.targets)


def prepare(ex: Exercise) -> Prepared:
    from safetensors.torch import save as st_save
    cases = [tuple(c) for c in ex.cases()]
    # a project is judged by its rules, in scoring: its reference is never run
    expected = [None if ex.project is not None else ex.reference(*clone_args(c)) for c in cases]
    tree, tensors = transport.encode(cases)
    doc = {"format": transport.FORMAT, "value": tree, "tensors": sorted(tensors)}
    cases_json = json.dumps(doc, sort_keys=True, allow_nan=False).encode()
    cases_tensors = st_save(tensors) if tensors else None
    h = hashlib.sha256(cases_json)
    h.update(cases_tensors or b"")
    exp_tree, exp_tensors = transport.encode(expected)
    h.update(json.dumps(exp_tree, sort_keys=True).encode())
    if exp_tensors:
        h.update(st_save(exp_tensors))
    h.update(repr((ex.id, ex.name, ex.points, ex.atol, ex.rtol, ex.check_dtype, ex.partial, ex.forbid)).encode())
    if ex.project is not None:   # the rules are the judge's code and the data it reads
        h.update(repr((ex.project.judge.__module__, ex.project.judge.__qualname__,
                       ex.project.version)).encode())
    return Prepared(ex, cases, expected, cases_json, cases_tensors, h.hexdigest()[:16], forbid.targets(ex.forbid))
