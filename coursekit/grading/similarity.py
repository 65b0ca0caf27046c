"""The similarity report: solutions identical, up to names and comments, to the reference or to another's.

Each exercise's function is found in the submission's code cells (the last top-level `def` of its
name, as the kernel would keep) and normalized: parsed to an AST, so comments and layout are
gone; docstrings, annotations and decorators dropped; every name (the function's, its
arguments', its variables' and the globals it reads) renamed in order of first use. Attributes
and constants stay: `torch.round(x / s)` and `torch.round(v / k)` are the same, `x.round()` is
not. The normalized text's hash is stored with each result, so a merge of shards can compare
across machines.

`similarity.csv` lists, per exercise, every solution that matches the reference solution or
another learner's, for the instructor to look at. It is never scored: small functions have few
ways to be written, and the `nodes` column says how small the function is.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import inspect
import io
import json
import textwrap
from collections import defaultdict
from pathlib import Path


class _Rename(ast.NodeTransformer):
    """Every identifier by its order of first use: v0, v1, ..."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_FunctionDef(self, node):
        node.name = self._name(node.name)
        node.decorator_list, node.returns = [], None
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]
        node.body = body
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_alias(self, node):
        if node.asname:
            node.asname = self._name(node.asname)
        return node


def _parse_cell(src: str) -> ast.Module | None:
    """A code cell as Python, IPython's magics and shell lines blanked; None when it is not Python."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _is_stub(fn: ast.FunctionDef) -> bool:
    """The learner copy's stub: the body only raises NotImplementedError (after a docstring)."""
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return all(isinstance(s, ast.Raise) and "NotImplementedError" in ast.dump(s) for s in body) and bool(body)


def normalize(fn: ast.FunctionDef) -> tuple[str, int]:
    """(hash of the normalized AST, number of its nodes)."""
    fn = _Rename().visit(ast.parse(ast.unparse(fn)).body[0])  # a copy: the caller's tree is untouched
    text = ast.dump(fn, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16], sum(1 for _ in ast.walk(fn))


def solution_hashes(raw: bytes, exercises) -> dict[str, list]:
    """{exercise id: [hash, nodes]} for each exercise whose function the notebook defines (not a stub)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        cells = [c for c in doc.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return {}
    defs: dict[str, ast.FunctionDef] = {}
    for cell in cells:
        src = cell.get("source", "")
        src = "".join(s for s in src if isinstance(s, str)) if isinstance(src, list) else src
        tree = _parse_cell(src) if isinstance(src, str) else None
        for node in tree.body if tree else []:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs[node.name] = node
    out = {}
    for ex in exercises:
        fn = defs.get(ex.name)
        if fn is not None and not _is_stub(fn):
            try:
                out[ex.id] = list(normalize(fn))
            except (RecursionError, ValueError, SyntaxError):
                pass
    return out


def reference_hash(ex) -> str | None:
    """The normalized hash of the exercise's reference solution; None when its source is unavailable."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(ex.reference)))
    except (OSError, TypeError, SyntaxError):
        return None
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    return normalize(fn)[0] if fn is not None else None


HEADER = ["exercise", "submission", "matches", "nodes", "normalized_hash"]


def similar(rows: list, registry) -> list[list]:
    """The rows of similarity.csv: one per (exercise, submission) whose solution has a twin."""
    table = []
    ids = [e for e in registry] + sorted({e for _, r in rows for e in r.solutions} - set(registry))
    for ex_id in ids:
        groups: dict[str, list] = defaultdict(list)
        for _, r in rows:
            if ex_id in r.solutions:
                h, nodes = r.solutions[ex_id]
                groups[h].append((r.submission, nodes))
        ref = reference_hash(registry[ex_id]) if ex_id in registry else None
        for h, members in groups.items():
            if len(members) < 2 and h != ref:
                continue
            for sub, nodes in members:
                others = [s for s, _ in members if s != sub]
                matches = (["reference solution"] if h == ref else []) + others
                table.append([ex_id, sub, "; ".join(matches), nodes, h])
    return table


def write_similarity(out: Path, rows: list, registry) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(similar(rows, registry))
    (out / "similarity.csv").write_text(buf.getvalue(), encoding="utf-8")
