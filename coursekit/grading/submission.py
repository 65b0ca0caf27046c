"""Grade one submission: read its code cells, run them in the sandbox, score every exercise.

The exercises are the spec's for the notebook's number, not what the submission's own cells
mention: deleting a `check(...)` cell does not remove an exercise. Nothing the kernel prints,
and nothing `check` says there, counts; only the harness's result files do.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from . import sandbox as sandboxed
from .isolation import Confinement, Isolation
from .options import GradeOptions
from .preparation import Prepared
from .protocol import harness_cell
from .results import RunStatus, SubmissionResult
from .scoring import not_run, run_status, score_exercise

MAX_NOTEBOOK_BYTES = 100 * 2**20
_DETAILS = ("cells_run", "cell_errors", "skipped_cells", "kernel_deaths", "output_truncated", "timings")


def code_cells(raw: bytes) -> list[str]:
    """The code cells of a notebook, read leniently (any nbformat 4 shape); raise on non-notebooks."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"it is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise ValueError("it is not a Jupyter notebook (no list of cells)")
    cells = []
    for cell in doc["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(s for s in src if isinstance(s, str))
        if isinstance(src, str) and src.strip():
            cells.append(src)
    return cells


def grade_submission(path: str | Path, preps: list[Prepared], options: GradeOptions, label: str,
                     sha256: str, raw: bytes, number: str | None, fingerprint: str,
                     confinement: Confinement | None = None) -> SubmissionResult:
    result = SubmissionResult(label, str(path), sha256, number, RunStatus.OK, "", fingerprint=fingerprint)
    try:
        cells = code_cells(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        result.status, result.status_message = RunStatus.INVALID, f"not a readable notebook: {str(exc)[:200]}"
        result.exercises = {p.ex.id: not_run(p, "the notebook could not be read.") for p in preps}
        return result
    work = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
    sandbox = Path(tempfile.mkdtemp(prefix="coursekit-sandbox-"))
    nonce = secrets.token_hex(16)
    started = time.monotonic()
    confinement = confinement or Confinement(Isolation(False, "none", "no isolation was set up"))
    cases, answers = work / "cases", work / "results"  # read-only and writable for the kernel
    cases.mkdir()
    answers.mkdir()
    try:
        harness = [{"id": p.ex.id, "timeout": options.exercise_timeout,
                    "code": harness_cell(p, nonce, str(cases / f"{nonce}-c{i}"), str(answers / f"{nonce}-r{i}"))}
                   for i, p in enumerate(preps)]
        wrap = confinement.kernel_wrap(sandbox, [cases], [answers], sandboxed.kernel_env(sandbox, options))
        run = sandboxed.run(cells, harness, options, work, sandbox, nonce, wrap)
        for i, p in enumerate(preps):
            state, detail = run.harness(p.ex.id)
            result.exercises[p.ex.id] = score_exercise(p, str(answers / f"{nonce}-r{i}"), nonce, state, detail)
        result.status, result.status_message = run_status(run)
        result.details = {k: run.report.get(k) for k in _DETAILS}
        result.details["seconds"] = round(time.monotonic() - started, 1)
        if isinstance(result.details.get("cell_errors"), list):
            result.details["cell_errors"] = result.details["cell_errors"][:10]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sandbox, ignore_errors=True)
    return result
