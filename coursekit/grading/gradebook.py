"""Gradebook export: one row per learner, one column per notebook, in the layout an LMS imports.

The learner comes from the submission's path through a regular expression with a group named
`learner` (`--learner-pattern`), searched in the path as the reports show it. The default reads
`alice_03_quantization_theory.ipynb` as alice and, failing that, `alice/03_quantization_theory.ipynb`
(a folder per learner) as alice. A learner's score for a notebook is their best submission of it.
Submissions whose path does not match are left out, and listed (`Gradebook.unmatched`).

* `canvas` -> gradebook-canvas.csv: Canvas's import layout. Columns Student, ID, SIS User ID,
  SIS Login ID, Section, then one per notebook; the second row is "Points Possible". Canvas
  matches learners on ID, SIS User ID or SIS Login ID: the learner id goes in SIS Login ID (and
  Student), ID and SIS User ID stay empty. A notebook column that matches no Canvas assignment is
  created as a new assignment on import; rename the header to "Your assignment (1234)" to fill an
  existing one.
* `moodle` -> gradebook-moodle.csv: an identifier column ("Username", or "Email address" when every
  id is an e-mail address), then one per notebook; in Moodle's "Import grades > CSV file" map the
  identifier to that user field and each notebook column to its grade item.
* `csv` -> gradebook.csv: learner, one column per notebook, total, max_total.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("canvas", "moodle", "csv")
DEFAULT_PATTERNS = (r"(?:^|/)(?P<learner>[^/]+?)_[0-9]{2}_[^/]*\.ipynb$",
                    r"(?:^|/)(?P<learner>[^/]+)/[0-9]{2}_[^/]*\.ipynb$")
FILES = {"canvas": "gradebook-canvas.csv", "moodle": "gradebook-moodle.csv", "csv": "gradebook.csv"}


class GradebookError(ValueError):
    """A --gradebook or --learner-pattern that cannot be used."""


def compile_pattern(pattern: str | None) -> list[re.Pattern]:
    """The learner patterns: the instructor's (it must have a group named `learner`) or the defaults."""
    if pattern is None:
        return [re.compile(p) for p in DEFAULT_PATTERNS]
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise GradebookError(f"--learner-pattern {pattern!r} is not a regular expression: {exc}") from None
    if "learner" not in rx.groupindex:
        raise GradebookError(f"--learner-pattern {pattern!r} needs a group named learner, "
                             f"e.g. '(?P<learner>[^/]+)_[0-9]{{2}}_'")
    return [rx]


def learner_of(label: str, patterns: list[re.Pattern]) -> str | None:
    path = label.replace("\\", "/")
    for rx in patterns:
        m = rx.search(path)
        if m and m.group("learner"):
            return m.group("learner")
    return None


def notebook_names(registry) -> dict[str, str]:
    """{"03": "03_quantization_theory"}: the spec module's name, or "notebook 03"."""
    names: dict[str, str] = {}
    for ex in registry.values():
        module = getattr(ex.reference, "__module__", "") or ""
        m = re.search(r"nb([0-9]{2})_(\w+)$", module)
        names.setdefault(ex.notebook, f"{m.group(1)}_{m.group(2)}" if m and m.group(1) == ex.notebook
                         else f"notebook {ex.notebook}")
    return names


@dataclass
class Gradebook:
    notebooks: list[str]                 # NN, in order
    names: dict[str, str]                # NN -> column name
    possible: dict[str, float]           # NN -> points possible
    scores: dict[str, dict[str, float]] = field(default_factory=dict)   # learner -> NN -> best score
    unmatched: list[str] = field(default_factory=list)


def build(rows: list, registry, pattern: str | None = None) -> Gradebook:
    patterns = compile_pattern(pattern)
    names = notebook_names(registry)
    possible: dict[str, float] = {}
    for ex in registry.values():
        possible[ex.notebook] = possible.get(ex.notebook, 0.0) + float(ex.points)
    book = Gradebook([], names, possible)
    for _, r in rows:
        who = learner_of(r.submission, patterns)
        if who is None or r.notebook is None:
            book.unmatched.append(r.submission)
            continue
        nb = r.notebook
        if nb not in book.notebooks:
            book.notebooks.append(nb)
        best = book.scores.setdefault(who, {})
        best[nb] = max(best.get(nb, 0.0), float(r.total))
        possible.setdefault(nb, float(r.max_total))
        names.setdefault(nb, f"notebook {nb}")
    book.notebooks.sort()
    return book


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def render(book: Gradebook, kind: str) -> str:
    if kind not in KINDS:
        raise GradebookError(f"--gradebook must be one of {', '.join(KINDS)}, got {kind!r}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [book.names[nb] for nb in book.notebooks]
    learners = sorted(book.scores)

    def marks(who):
        return [_num(book.scores[who][nb]) if nb in book.scores[who] else "" for nb in book.notebooks]

    if kind == "canvas":
        w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *cols])
        w.writerow(["Points Possible", "", "", "", "", *[_num(book.possible[nb]) for nb in book.notebooks]])
        for who in learners:
            w.writerow([who, "", "", who, "", *marks(who)])
    elif kind == "moodle":
        ident = "Email address" if learners and all("@" in x for x in learners) else "Username"
        w.writerow([ident, *cols])
        for who in learners:
            w.writerow([who, *marks(who)])
    else:
        w.writerow(["learner", *cols, "total", "max_total"])
        for who in learners:
            total = sum(book.scores[who].values())
            w.writerow([who, *marks(who), _num(total), _num(sum(book.possible[nb] for nb in book.notebooks))])
    return buf.getvalue()


def write_gradebook(out: Path, rows: list, registry, kind: str, pattern: str | None = None) -> Gradebook:
    book = build(rows, registry, pattern)
    (out / FILES[kind]).write_text(render(book, kind), encoding="utf-8")
    return book
