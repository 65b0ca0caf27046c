"""The grader's harness: inside the learner's kernel, call their function on the hidden cases.

The grader does not import this in the kernel: it sends the source texts of
`coursekit/exercises/outcome.py`, `transport.py`, `forbid.py` and this file, and executes them in one fresh
namespace named `_coursekit_harness` (an imported coursekit could have been patched by the
learner's cells). So this file uses the names of those three as its own; the imports below only
serve reading and testing it as an ordinary module.

The harness judges nothing. It writes what the function returned (or raised) to a result file,
under the grader's nonce; the grader reads that file strictly and judges in its own process.
"""

import json
import os

if __name__ != "_coursekit_harness":  # an ordinary import, not the kernel
    from ..exercises.outcome import Handed, Kind, call, handed
    from .transport import FORMAT, decode, encode, load_json, load_tensors, name_of_type
    from .forbid import arm, disarm

_MISSING = object()


def run_exercise(user_ns, name, is_value, cases_stem, out_stem, nonce, exercise, harness_file, forbid=()):
    """Call the learner's `name` on every hidden case of CASES_STEM; write OUT_STEM.json (+ tensors).

    `forbid` ([dotted, module, file, qualname], see forbid.py): coursekit functions the learner's
    function must not call; the calls it made anyway are listed under "forbidden".

    A KeyboardInterrupt (the grader's time limit) is not caught, so an exercise that ran out of
    time leaves no result file at all.
    """
    fn = user_ns.get(name, _MISSING) if isinstance(user_ns, dict) else _MISSING
    given = Handed.MISSING if fn is _MISSING else handed(fn, is_value)
    result = {"format": FORMAT, "nonce": nonce, "exercise": exercise, "function": str(given),
              "function_type": name_of_type(fn)[:200] if given is Handed.NOT_A_FUNCTION else "",
              "cases": [], "tensors": [], "forbidden": []}
    tensors, calls = {}, []
    if given is Handed.FUNCTION:
        doc = load_json(cases_stem + ".json")
        case_tensors = load_tensors(cases_stem + ".safetensors", doc["tensors"])
        outcomes = []
        armed = arm(forbid, calls, harness_file)
        try:
            for node in doc["value"]["v"]:
                args = decode(node, case_tensors)  # fresh copies for every call
                outcomes.append(call(fn, args, lambda filename: filename == harness_file))
        finally:
            disarm(armed)
        for outcome in outcomes:
            record, tensors = _record(outcome, tensors)
            result["cases"].append(record)
    result["tensors"] = sorted(tensors)
    result["forbidden"] = sorted(set(calls))
    _write(result, tensors, out_stem)


def _record(outcome, tensors):
    """One outcome as a JSON record ({"r": kind, ...}); returned values go through `encode`."""
    if outcome.kind is Kind.RETURNED:
        tree, tensors = encode(outcome.value, tensors)
        return {"r": str(Kind.RETURNED), "value": tree}, tensors
    if outcome.kind is Kind.RAISED:
        return {"r": str(Kind.RAISED), "type": outcome.error[:200], "message": outcome.message[:500],
                "where": outcome.where[:300]}, tensors
    return {"r": str(Kind.NOT_DONE)}, tensors


def _write(result, tensors, out_stem):
    """The tensors first, the JSON last and atomically: a JSON file means a complete result."""
    if tensors:
        from safetensors.torch import save_file
        save_file(tensors, out_stem + ".safetensors")
    with open(out_stem + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, allow_nan=False)
    os.replace(out_stem + ".json.tmp", out_stem + ".json")
