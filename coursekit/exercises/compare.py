"""How a learner's result is compared with the reference, and how a value is shown to them.

`compare` returns None or one sentence that says what differs ("the dtype is torch.float64,
expected torch.float32"), never a bare "wrong": the learner should see what to fix. `describe`
pictures a value in one short line (type, shape, dtype, a few numbers), for those sentences.
Floating-point results are compared with the exercise's tolerance; integers, bools and strings
exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .spec import Exercise


def describe(value: Any) -> str:
    """A short, learner-readable picture of a value: type, shape, dtype and a few numbers."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            shown = value.detach().cpu().tolist()
            shown = _round_nested(shown)
        else:
            flat = value.detach().reshape(-1)[:4].cpu().tolist()
            shown = f"[{', '.join(_fmt(v) for v in flat)}, ...]"
        return f"tensor {shown} (shape {tuple(value.shape)}, dtype {value.dtype})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value)
        return f"{type(value).__name__} of {len(value)}: ({inner})"
    if isinstance(value, float):
        return f"{_fmt(value)} (float)"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def _round_nested(v):
    if isinstance(v, list):
        return [_round_nested(x) for x in v]
    return float(f"{v:.6g}") if isinstance(v, float) else v


def compare(got: Any, expected: Any, ex: Exercise) -> str | None:
    """None when `got` matches `expected`; otherwise a sentence saying what differs."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"the shape is {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if ex.check_dtype and got.dtype != expected.dtype:
            return f"the dtype is {got.dtype}, expected {expected.dtype}"
        g, e = got.detach().cpu(), expected.detach().cpu()
        if e.is_floating_point() or g.is_floating_point():
            g64, e64 = g.double(), e.double()
            if bool(torch.isnan(g64).any()) and not bool(torch.isnan(e64).any()):
                return "the result contains NaN"
            close = torch.isclose(g64, e64, rtol=ex.rtol, atol=ex.atol, equal_nan=True)
        else:
            close = g == e
        if not bool(close.all()):
            bad = int((~close).sum())
            idx = tuple(int(i) for i in (~close).nonzero()[0]) if close.dim() else ()
            where = f" at index {list(idx)}" if idx else ""
            return (f"{bad} of {close.numel()} values differ; first{where}: "
                    f"got {_fmt(g[idx].item())}, expected {_fmt(e[idx].item())}")
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"expected a {type(expected).__name__} of {len(expected)} items, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"expected {len(expected)} items, got {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, ex)
            if problem:
                return f"item {i}: {problem}"
        return None
    if getattr(ex, "choices", ()):          # multiple choice: never reveal the right letter
        if got not in ex.choices:
            return f"got {describe(got)}, expected one of {', '.join(repr(c) for c in ex.choices)}"
        return None if got == expected else f"{got!r} is not the statement the numbers support"
    if isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        return None if (type(got) is type(expected) and got == expected) else \
            f"got {describe(got)}, expected {describe(expected)}"
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"expected a number, got {describe(got)}"
        if isinstance(expected, int):   # whole numbers compare exactly, at any size
            if isinstance(got, float) and not got.is_integer():
                return f"got {_fmt(got)}, expected the whole number {expected}"
            return None if got == expected else f"got {_fmt(got)}, expected {expected}"
        if math.isnan(got) and not math.isnan(expected):
            return "the result is NaN"
        if not math.isclose(got, expected, rel_tol=ex.rtol, abs_tol=ex.atol):
            return f"got {_fmt(got)}, expected {_fmt(expected)}"
        return None
    return None if got == expected else f"got {describe(got)}, expected {describe(expected)}"


def clone_args(args: tuple) -> tuple:
    """Fresh copies of the arguments, so neither side can change what the other sees."""
    return tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
