"""Forbidden calls: an exercise's answer must not delegate to the coursekit function that implements it.

An exercise may name such functions (`forbid=("coursekit.quant.linear_quantize",)`). The grader
resolves each name in its own process (`targets`: it must be a Python function) and sends the
harness where its code lives. While the learner's function runs on the hidden cases, the harness
has every function object whose code is that code (found through the garbage collector, so a
reference the learner captured, `lq = coursekit.quant.linear_quantize`, or a copy made with
`types.FunctionType(f.__code__, ...)` is caught as well as the module's attribute) run a
tripwire instead: its `__code__` is swapped for one that records the call and raises
`ForbiddenCall`. The originals are put back before the harness writes its results. The grader
then scores the exercise 0, saying which function was called (`verdict.judge(forbidden=...)`).

Like harness.py, this file is also executed from its source text inside the learner's kernel, in
the harness's namespace: the kernel side (`arm`, `disarm`) imports only the standard library.
"""

import gc
import importlib
import types

TRIPWIRE_GLOBAL = "__coursekit_forbidden__"


class ForbiddenCall(BaseException):
    """Raised by a tripwire (a BaseException: `except Exception` in the learner's code won't hide it)."""


def targets(names):
    """[[dotted, module, filename, qualname]] for the forbidden names (of the innermost function, for
    a decorated one); ValueError for a name that is not an importable Python function (a broken
    spec, caught before any submission is graded)."""
    found = []
    for dotted in names:
        parts = dotted.split(".")
        obj, module = None, None
        for k in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
            except ImportError:
                continue
            module = ".".join(parts[:k])
            try:
                for attr in parts[k:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                obj = None
            break
        # a decorated function (functools.wraps, torch.no_grad): its own code is the one to catch;
        # the wrapper's code is shared by every function the decorator wraps
        while obj is not None and hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        if not isinstance(obj, types.FunctionType):
            raise ValueError(f"forbid: {dotted} is not a Python function of an importable module")
        code = obj.__code__
        found.append([dotted, module, code.co_filename, getattr(code, "co_qualname", code.co_name)])
    return found


def _tripwire(code, dotted, filename):
    """A code object that records a call of `dotted`, with `code`'s free variables (so that it can
    replace `code` in any function object that has it) and its name (tracebacks read the same)."""
    free = code.co_freevars
    body = f"    {TRIPWIRE_GLOBAL}({dotted!r})\n"
    if free:
        src = (f"def _outer():\n    {' = '.join(free)} = None\n    def _wire(*args, **kwargs):\n"
               f"        {', '.join(free)}\n    {body}    return _wire\n")
    else:
        src = f"def _wire(*args, **kwargs):\n{body}"
    ns = {}
    exec(compile(src, filename, "exec"), ns)
    wire = (ns["_outer"]() if free else ns["_wire"]).__code__
    changes = {"co_name": code.co_name}
    if hasattr(code, "co_qualname"):
        changes["co_qualname"] = code.co_qualname
    return wire.replace(**changes)


def arm(forbid, calls, filename):
    """Swap in tripwires for every function object running forbidden code; return what to restore.
    `calls` (a list) receives the dotted name of every forbidden call."""
    if not forbid:
        return []
    for _dotted, module, _file, _qualname in forbid:
        try:  # imported now, so that an import inside the learner's function finds it patched
            importlib.import_module(module)
        except Exception:
            pass
    wanted = {(f, q): d for d, _m, f, q in forbid}

    def record(dotted):
        calls.append(dotted)
        raise ForbiddenCall(f"{dotted} is forbidden in this exercise")

    armed, wires = [], {}
    for obj in gc.get_objects():
        if type(obj) is not types.FunctionType:
            continue
        code = obj.__code__
        dotted = wanted.get((code.co_filename, getattr(code, "co_qualname", code.co_name)))
        if dotted is None:
            continue
        key = (id(code), dotted)
        if key not in wires:
            wires[key] = _tripwire(code, dotted, filename)
        try:
            obj.__code__ = wires[key]
        except (ValueError, TypeError):
            continue
        armed.append((obj, code, obj.__globals__, obj.__globals__.get(TRIPWIRE_GLOBAL)))
        obj.__globals__[TRIPWIRE_GLOBAL] = record
    return armed


def disarm(armed):
    for obj, code, globs, _previous in armed:
        obj.__code__ = code
        globs.pop(TRIPWIRE_GLOBAL, None)
