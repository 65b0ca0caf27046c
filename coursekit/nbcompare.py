"""Compare notebook outputs as a reader would: every character the same, numbers within a tolerance.

Why this exists: the masters store the outputs of one machine, and `make test` re-executes them
under nbval. Float kernels differ between CPUs (MKL, oneDNN and ATen pick other instructions and
summation orders), so a bf16 perplexity printed as 43.250 on one machine reads 43.258 on another.
Comparing outputs character by character fails on every machine but the author's; switching the
comparison off would hide real regressions. This module keeps it strict where it can be:

* Text outside numbers must match exactly: a changed word, a missing line or a different shape fails.
* Integers must match exactly (codes, byte counts, zero points, the worked numbers 213 and -77).
* A decimal number agrees when it is within ``rel`` (0.1 %) of the stored one, or within one unit
  of its last printed digit, whichever is looser: 43.250 vs 43.258 agree, 43.24 vs 43.67 do not;
  ``2e-04`` vs ``3e-04`` agree (one unit of the only digit printed).

A cell whose values are inherently sensitive to the kernels (the maximum of bf16 differences, a
percentage rounded to a whole number) may loosen this for itself alone, with a reason:

    # NBVAL_TOLERANCE rel=0.01 integers: the maximum of bf16 differences depends on the CPU's kernels

Options: ``rel=`` (relative), ``abs=`` (absolute), ``units=`` (units in the last printed digit),
``integers`` (apply the tolerance to whole numbers too) and ``on=TEXT`` (loosen only the numbers
printed right before TEXT, e.g. ``on=%`` for percentages; the cell's other numbers keep the default).
The reason after the colon is required.

Wired into nbval as a pytest plugin (the ``pytest11`` entry point in pyproject.toml): nbval still
runs the cells and reports differences; before it compares, each text output that agrees within
tolerance with the stored one is replaced by the stored text, so only real differences reach it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

__all__ = ["Tolerance", "DEFAULT", "MARKER", "tolerance_for", "split_numbers", "numbers_agree",
           "first_difference", "reconcile_outputs"]

MARKER = "NBVAL_TOLERANCE"

# A number is a token of its own: not glued to a word ("fp16", "W8A16", "4096x4096" stay text),
# not part of a dotted version ("0.2.7"). A full stop that ends a sentence does not belong to it.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w)(?!\.\d)")
_MARKER_LINE = re.compile(rf"^\s*#\s*{MARKER}\b(?P<options>[^:\n]*)(?::(?P<reason>[^\n]*))?$", re.M)
_TEXT_KEYS = ("text/plain", "text/html", "text/markdown", "text/latex")


@dataclass(frozen=True)
class Tolerance:
    """How far a printed number may drift from the stored one and still agree."""
    rel: float = 1e-3       # relative to the larger magnitude
    units: float = 1.0      # units in the last printed digit (0.001 for "43.250", 1e-4 for "2e-04")
    abs: float = 0.0        # absolute
    integers: bool = False  # whole numbers compare exactly unless a cell says otherwise
    on: str = ""            # if set, this tolerance is for numbers followed by this text only
    reason: str = ""

    def applies_before(self, following_text: str) -> "Tolerance":
        """This tolerance for a number followed by ``following_text``; DEFAULT where ``on`` excludes it."""
        return self if following_text.startswith(self.on) else DEFAULT

    def describe(self) -> str:
        parts = [f"{self.rel:g} relative", f"{self.units:g} unit(s) in the last printed digit"]
        if self.abs:
            parts.append(f"{self.abs:g} absolute")
        text = " or ".join(parts) + ", whichever is looser"
        text += "; whole numbers too" if self.integers else "; whole numbers exact"
        return text + (f"; for numbers before {self.on!r}" if self.on else "")


DEFAULT = Tolerance()


def tolerance_for(source: str) -> Tolerance:
    """The tolerance a cell asks for with a ``# NBVAL_TOLERANCE ...: reason`` line (else DEFAULT)."""
    found = list(_MARKER_LINE.finditer(source or ""))
    if not found:
        return DEFAULT
    if len(found) > 1:
        raise ValueError(f"a cell may hold one {MARKER} line, found {len(found)}")
    match = found[0]
    reason = (match["reason"] or "").strip()
    if not reason:
        raise ValueError(f"{MARKER} needs a reason after a colon, e.g. "
                         f"'# {MARKER} rel=0.01: bf16 maxima depend on the CPU's kernels'")
    fields: dict = {"reason": reason}
    for option in match["options"].split():
        name, _, value = option.partition("=")
        if name == "integers" and not value:
            fields["integers"] = True
        elif name == "on" and value:
            fields["on"] = value
        elif name in ("rel", "abs", "units") and value:
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not (number >= 0 and math.isfinite(number)):
                raise ValueError(f"{MARKER} {name}: expected a number >= 0, got {value!r}")
            fields[name] = number
        else:
            raise ValueError(f"{MARKER}: unknown option {option!r}; expected rel=, abs=, units=, "
                             f"on= or integers")
    return replace(DEFAULT, **fields)


def split_numbers(text: str) -> list[str]:
    """``text`` as [text, number, text, number, ..., text]: numbers at the odd positions."""
    parts: list[str] = []
    start = 0
    for match in NUMBER.finditer(text):
        parts += [text[start:match.start()], match.group()]
        start = match.end()
    parts.append(text[start:])
    return parts


def _is_integer(token: str) -> bool:
    return not any(c in token for c in ".eE")


def _last_digit_unit(token: str) -> float:
    """The value of one unit in the last printed digit: 0.001 for "43.250", 1e-4 for "2e-04".

    A number with no digit after its point and no exponent ("1.", as torch prints whole floats)
    gets none: its last digit is a whole unit and would let 1. and 2. agree.
    """
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    if decimals == 0 and not exponent:
        return 0.0
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_agree(expected: str, got: str, tol: Tolerance = DEFAULT) -> bool:
    """Whether two printed numbers agree under ``tol`` (whole numbers exactly unless tol.integers)."""
    if expected == got:
        return True
    if (_is_integer(expected) or _is_integer(got)) and not tol.integers:
        return False
    a, b = float(expected), float(got)
    unit = max(_last_digit_unit(expected), _last_digit_unit(got))
    if tol.integers and _is_integer(expected) and _is_integer(got):
        unit = 1.0
    allowed = max(tol.rel * max(abs(a), abs(b)), tol.units * unit, tol.abs)
    return abs(a - b) <= allowed * (1 + 1e-9)  # the slack absorbs decimal-to-binary rounding


def first_difference(expected: str, got: str, tol: Tolerance = DEFAULT) -> str | None:
    """None when ``got`` agrees with ``expected``; else a sentence about the first difference."""
    if expected == got:
        return None
    want, have = split_numbers(expected), split_numbers(got)
    for i, (w, h) in enumerate(zip(want, have)):
        if i % 2 == 0 and w != h:
            return f"text differs: expected {_excerpt(w, h)!r}, got {_excerpt(h, w)!r}"
        if i % 2 == 1:
            allowed = tol.applies_before(want[i + 1])
            if not numbers_agree(w, h, allowed):
                return f"number differs: expected {w}, got {h} (allowed: {allowed.describe()})"
    if len(want) != len(have):
        return (f"expected {len(want) // 2} numbers, got {len(have) // 2}; "
                f"expected text {expected[-60:]!r}, got {got[-60:]!r}")
    return None


def _excerpt(text: str, other: str, width: int = 30) -> str:
    """The part of ``text`` around where it first departs from ``other``."""
    n = next((i for i, (a, b) in enumerate(zip(text, other)) if a != b), min(len(text), len(other)))
    return text[max(0, n - width): n + width]


def _kind(output) -> tuple:
    if output.get("output_type") == "stream":
        return ("stream", output.get("name"))
    return ("data",)


def _text_fields(output) -> list[tuple[tuple[str, ...], str]]:
    """(path, text) of every text field of one output that is compared."""
    fields = []
    if isinstance(output.get("text"), str):
        fields.append((("text",), output["text"]))
    for key in _TEXT_KEYS:
        value = output.get("data", {}).get(key)
        if isinstance(value, str):
            fields.append((("data", key), value))
    return fields


def reconcile_outputs(test: list, ref: list, tol: Tolerance = DEFAULT) -> tuple[list, list[str]]:
    """``test`` with every text field that agrees with ``ref``'s under ``tol`` set to ``ref``'s text.

    Outputs are paired by kind and order (the k-th stdout with the k-th stdout, the k-th display
    with the k-th display). Returns the new list (``test`` is not changed) and, for each field that
    still differs, a sentence saying where.
    """
    import copy
    result = [copy.deepcopy(o) for o in test]
    notes: list[str] = []
    pools: dict[tuple, list] = {}
    for output in ref:
        pools.setdefault(_kind(output), []).append(output)
    seen: dict[tuple, int] = {}
    for output in result:
        kind = _kind(output)
        k = seen.get(kind, 0)
        seen[kind] = k + 1
        if k >= len(pools.get(kind, [])):
            continue
        stored = dict(_text_fields(pools[kind][k]))
        for path, text in _text_fields(output):
            if path not in stored:
                continue
            why = first_difference(stored[path], text, tol)
            if why is None:
                target = output
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = stored[path]
            else:
                notes.append(f"{'/'.join(path)}: {why}")
    return result, notes


# ----------------------------------------------------------------------------- pytest plugin

def pytest_configure(config):
    """Make nbval's output comparison tolerant of float digits (see the module docstring)."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to do
        return
    original = IPyNbCell.compare_outputs
    if getattr(original, "coursekit_tolerant", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        tol = tolerance_for(self.cell.source)
        test, notes = reconcile_outputs(test, ref, tol)
        same = original(self, test, ref, skip_compare)
        if not same and notes:
            self.comparison_traceback.extend(["", "coursekit.nbcompare: " + "; ".join(notes)])
        return same

    compare_outputs.coursekit_tolerant = True
    IPyNbCell.compare_outputs = compare_outputs
