"""Argument checks for coursekit's public functions, in one message style.

A learner who passes a wrong argument should read, in one line, which argument, what was expected
and what it got: ``bits: expected an int from 2 to 8, got 9``. Every public function checks its
arguments once, at the boundary, with these helpers; the private code behind it trusts them.

``bool`` is never accepted where a number is expected (``True`` is an ``int`` to Python, never
to a learner). A wrong *type* raises TypeError and names the type; a wrong *value* raises
ValueError and shows the value.
"""

from __future__ import annotations

from typing import Any, Iterable, NoReturn

__all__ = ["fail", "check_int", "check_number", "check_choice", "check_instance", "check_tensor"]


def fail(name: str, expected: str, got: Any, error: type[Exception] = ValueError) -> NoReturn:
    """Raise ``error("name: expected <expected>, got <got>")``."""
    raise error(f"{name}: expected {expected}, got {got}")


def _got_type(value) -> str:
    return type(value).__name__


def _range_words(kind: str, low, high) -> str:
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high] (either bound optional); bools and floats are refused."""
    expected = _range_words("an int", low, high)
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        fail(name, expected, _got_type(value), TypeError)
    value = int(value.__index__())
    if (low is not None and value < low) or (high is not None and value > high):
        fail(name, expected, value)
    return value


def check_number(value, name: str, low: float | None = None, high: float | None = None,
                 positive: bool = False) -> float:
    """``value`` as a float (int or float, not bool) within [low, high], or > 0 with ``positive``."""
    import math
    expected = "a positive number" if positive else _range_words("a number", low, high)
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or hasattr(value, "__float__")):
        fail(name, expected, _got_type(value), TypeError)
    try:
        number = float(value)
    except (TypeError, ValueError):  # e.g. a tensor of several elements
        fail(name, expected, _got_type(value), TypeError)
    if (math.isnan(number) or (positive and number <= 0) or (low is not None and number < low)
            or (high is not None and number > high)):
        fail(name, expected, value)
    return number


def check_choice(value, name: str, choices: Iterable) -> Any:
    """``value`` if it is one of ``choices`` (bools are never taken for 0 or 1)."""
    choices = tuple(choices)
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        fail(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    try:
        ok = value in choices
    except TypeError:  # an unhashable or uncomparable value
        ok = False
    if not ok:
        fail(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def check_instance(value, name: str, types, what: str) -> Any:
    """``value`` if it is an instance of ``types``; ``what`` says it in words ("a torch.nn.Linear")."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        fail(name, what, _got_type(value), TypeError)
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def check_tensor(value, name: str, floating: bool = False, ndim: int | None = None):
    """``value`` if it is a torch.Tensor (floating point, and with ``ndim`` dimensions, if asked)."""
    import torch
    what = "a floating-point torch.Tensor" if floating else "a torch.Tensor"
    check_instance(value, name, torch.Tensor, what)
    if floating and not value.is_floating_point():
        fail(name, what, f"a tensor of dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        fail(name, f"a {ndim}-D tensor", f"shape {tuple(value.shape)}")
    return value
