"""Grading throughput: submissions per minute with --jobs 1 and --jobs 2.

The submissions are copies of the learner copy of notebook 05 (a fast notebook) with the reference
solutions filled in, so every one runs its cells and every exercise is graded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks" / "05_symmetric_vs_asymmetric.ipynb"


def run(n_submissions: int = 6, jobs=(1, 2)) -> dict:
    from coursekit.grading import GradeOptions, grade_batch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "subs"
        subs.mkdir()
        for i in range(n_submissions):
            shutil.copy(SOURCE, subs / f"learner_{chr(97 + i)}_{SOURCE.name}")
        for j in jobs:
            out = Path(tmp) / f"out_jobs{j}"
            start = time.perf_counter()
            results = grade_batch([subs], out, GradeOptions(jobs=j, timeout=300), progress=False)
            seconds = time.perf_counter() - start
            rows.append(dict(jobs=j, submissions=len(results), seconds=seconds,
                             per_minute=60 * len(results) / seconds,
                             full_marks=sum(r.total == r.max_total for r in results),
                             statuses=sorted({r.status for r in results})))
    return dict(notebook=SOURCE.name, rows=rows)


def to_markdown(r: dict) -> str:
    lines = [f"Submissions: copies of {r['notebook']} (cells executed, then every exercise graded).", "",
             "| --jobs | submissions | seconds | submissions / minute | full marks | statuses |",
             "|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {x['jobs']} | {x['submissions']} | {x['seconds']:.1f} | {x['per_minute']:.2f} | "
              f"{x['full_marks']} | {', '.join(x['statuses'])} |" for x in r["rows"]]
    return "\n".join(lines)
