"""Grading throughput: submissions per minute with --jobs 1 and --jobs 2, isolation on and off.

The submissions are copies of the learner copy of notebook 05 (a fast notebook) with the reference
solutions filled in, so every one runs its cells and every exercise is graded. "isolation on" runs
each kernel under bubblewrap (`coursekit grade --isolation bwrap`); that row is left out, with the
reason, where bubblewrap cannot run. The two settings grade the same submissions one after the
other on the same machine (at each --jobs, one right after the other), so their ratio is the cost of
the isolation there; on a machine shared with other work, compare rows measured back to back.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks" / "05_symmetric_vs_asymmetric.ipynb"


def run(n_submissions: int = 6, jobs=(1, 2), isolation=("none", "bwrap")) -> dict:
    from coursekit.grading import GradeOptions, grade_batch
    from coursekit.grading.isolation import bwrap_path, probe
    usable, said = probe(bwrap_path())
    modes = [m for m in isolation if m != "bwrap" or usable]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "subs"
        subs.mkdir()
        for i in range(n_submissions):
            shutil.copy(SOURCE, subs / f"learner_{chr(97 + i)}_{SOURCE.name}")
        for j in jobs:          # the two settings back to back at each --jobs: the same load on the machine
            for mode in modes:
                out = Path(tmp) / f"out_{mode}_jobs{j}"
                start = time.perf_counter()
                results = grade_batch([subs], out, GradeOptions(jobs=j, timeout=300, isolation=mode),
                                      progress=False)
                seconds = time.perf_counter() - start
                rows.append(dict(isolation="on (bubblewrap)" if mode == "bwrap" else "off", jobs=j,
                                 submissions=len(results), seconds=seconds,
                                 per_minute=60 * len(results) / seconds,
                                 full_marks=sum(r.total == r.max_total for r in results),
                                 statuses=sorted({r.status for r in results})))
    skipped = "" if usable or "bwrap" not in isolation else f"isolation on was not measured: {said}"
    return dict(notebook=SOURCE.name, rows=rows, bwrap=said if usable else "", skipped=skipped)


def to_markdown(r: dict) -> str:
    lines = [f"Submissions: copies of {r['notebook']} (cells executed, then every exercise graded); "
             f"isolation on = each kernel under {r.get('bwrap') or 'bubblewrap'}.", "",
             "| isolation | --jobs | submissions | seconds | submissions / minute | full marks | statuses |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {x.get('isolation', 'off')} | {x['jobs']} | {x['submissions']} | {x['seconds']:.1f} | "
              f"{x['per_minute']:.2f} | {x['full_marks']} | {', '.join(x['statuses'])} |" for x in r["rows"]]
    if r.get("skipped"):
        lines += ["", r["skipped"]]
    return "\n".join(lines)
