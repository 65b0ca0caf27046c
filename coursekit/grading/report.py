"""What the grader writes: grades.csv, grades.json, one feedback page per submission, a progress bar.

Alongside (each in its own module): summary.md + summary.png (`summary`), similarity.csv
(`similarity`) and, when asked, a gradebook for an LMS (`gradebook`). grades.json says first
whether the submissions were isolated (`isolation`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path

from ..exercises.verdict import Status
from .results import RunStatus

_ADVICE = {
    RunStatus.TIMEOUT: "Your notebook took longer than allowed. Look for a loop that never ends, or work "
                       "that is far bigger than the exercise needs.",
    RunStatus.MEMORY: "Your notebook used more memory than allowed. Look for a very large tensor or a list "
                      "that keeps growing.",
    RunStatus.ERROR: "Some cells raised errors. Exercises were still graded where the functions were "
                     "defined; run your notebook top to bottom (Restart & Run All) to see the errors.",
    RunStatus.INVALID: "The file could not be graded. Submit the .ipynb notebook itself, named like the "
                       "course notebook (NN_topic.ipynb).",
}
_MARK = {Status.PASSED: "✅", Status.FAILED: "❌", Status.ERROR: "❌", Status.NOT_DONE: "⏳",
         Status.MISSING: "❓", Status.TIMEOUT: "⏱️", Status.NOT_RUN: "⏭️", Status.INVALID: "⚠️",
         Status.FORBIDDEN: "🚫"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def _measure(x) -> str:
    """A measurement as grades.csv shows it: 6 significant digits, "" when not measured."""
    return "" if x is None else f"{x:.6g}"


def write_reports(out: Path, rows: list, registry, isolation=None, options=None) -> None:
    """rows: (key, SubmissionResult) in batch order; `isolation` what the kernels ran under;
    `options` (GradeOptions) says which gradebook to write, if any."""
    from .gradebook import write_gradebook
    from .similarity import write_similarity
    from .summary import write_summary
    seen = {e for _, r in rows for e in r.exercises}
    ids = [e for e in registry if e in seen] + sorted(seen - set(registry))  # the notebooks' order
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    # a project's measurements (e.g. its file's size and perplexity) in columns of their own, "ID name"
    measured = list(dict.fromkeys((e, m) for e in ids for _, r in rows if e in r.exercises
                                  for m in r.exercises[e].measures))
    w.writerow(["submission", *ids, "total", "max_total", "status", *[f"{e} {m}" for e, m in measured]])
    for _, r in rows:
        w.writerow([r.submission, *[_num(r.exercises[e].points) if e in r.exercises else "" for e in ids],
                    _num(r.total), _num(r.max_total), r.status,
                    *[_measure(r.exercises[e].measures.get(m)) if e in r.exercises else "" for e, m in measured]])
    (out / "grades.csv").write_text(buf.getvalue(), encoding="utf-8")

    doc = {"isolation": isolation.to_json() if isolation is not None else None,
           "exercises": {e: {"points": registry[e].points if e in registry else None,
                             "title": registry[e].title if e in registry else ""} for e in ids},
           "submissions": []}
    for key, r in rows:
        d = r.to_json()
        d.pop("grader", None)
        d.pop("solutions", None)
        d["feedback"] = f"feedback/{key}.md"
        d["reused"] = r.reused
        doc["submissions"].append(d)
    (out / "grades.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")

    for key, r in rows:
        (out / "feedback" / f"{key}.md").write_text(feedback(r), encoding="utf-8")
    write_summary(out, rows, registry, isolation)
    write_similarity(out, rows, registry)
    if options is not None and options.gradebook:
        write_gradebook(out, rows, registry, options.gradebook, options.learner_pattern)


def feedback(r) -> str:
    lines = [f"# Feedback: {r.submission}", ""]
    lines.append(f"**Score: {_num(r.total)} / {_num(r.max_total)}** · run status: **{r.status}** "
                 f"({r.status_message})")
    if r.status in _ADVICE:
        lines += ["", _ADVICE[r.status]]
    passed = [e for e in r.exercises.values() if e.status == Status.PASSED]
    other = [e for e in r.exercises.values() if e.status != Status.PASSED]
    if passed:
        lines += ["", "## Passed", ""]
        lines += [f"- ✅ {e.message} ({_num(e.points)} / {_num(e.max_points)})" for e in passed]
    if other:
        lines += ["", "## To work on", ""]
        for e in other:
            title = f" · {e.title}" if e.title else ""
            lines += [f"### {_MARK.get(e.status, '❌')} {e.id}{title}: {_num(e.points)} / {_num(e.max_points)}", ""]
            first, *rest = e.message.split("\n")
            lines.append(first)
            if rest:
                lines += ["", "```", *[x.strip() for x in rest], "```"]
            if e.cases and e.status in (Status.FAILED, Status.ERROR):
                credit = " (partial credit: points in proportion)" if 0 < e.points < e.max_points else ""
                lines += ["", f"{e.cases_passed} of {e.cases} hidden cases passed{credit}."]
            if e.hint:
                lines += ["", f"Hint: {e.hint}"]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.counts, self.reused = total, 0, Counter(), 0

    def update(self, status: str, reused: bool = False):
        self.done += 1
        self.counts[status] += 1
        self.reused += reused
        if self.enabled:
            width = 30
            filled = int(width * self.done / max(1, self.total))
            counts = " ".join(f"{k}:{v}" for k, v in sorted(self.counts.items()))
            again = f" ({self.reused} already graded)" if self.reused else ""
            self.stream.write(f"\rgrading [{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} {counts}{again}\x1b[K")
            self.stream.flush()

    def close(self):
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
