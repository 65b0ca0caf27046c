"""Grade a batch: find the submissions, plan each one, run the rest in parallel, write the reports.

A plan settles, without running anything, every submission that needs no kernel: a file that
cannot be read, one whose notebook number is unknown, one already graded (see `store`). The
others are graded `jobs` at a time; a failure of the grader on one submission is reported on
its row and the batch goes on. Ctrl-C stops the runs in flight and keeps what was finished.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..exercises.spec import Exercise
from . import shards, similarity
from .isolation import Confinement, Isolation, IsolationError, resolve
from .masking import build_masked
from .options import GradeOptions
from .preparation import Prepared, load_registry, prepare
from .report import Progress, write_reports
from .results import GRADER_VERSION, RunStatus, SubmissionResult
from .sandbox import InFlight
from .store import load_previous, save
from .submission import grade_submission

_NOTEBOOK_NUMBER = re.compile(r"(?<![0-9])([0-9]{2})_")


class UsageError(Exception):
    """A mistake in how the grader was called (no submissions, unusable output folder...)."""


def find_submissions(paths: list[str | Path]) -> list[Path]:
    """The .ipynb files named or found under the given folders, each once, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts))
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    first: dict[Path, Path] = {}
    for p in found:  # the same file named twice, or through two paths: graded once
        first.setdefault(p.resolve(), p)
    unique = list(first.values())
    if not unique:
        raise UsageError("no submissions to grade (no .ipynb files found)")
    return unique


def prepare_out(out: Path) -> None:
    """Make DIR, DIR/results and DIR/feedback, and prove they can be written, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results").mkdir(exist_ok=True)
        (out / "feedback").mkdir(exist_ok=True)
        probe = out / "results" / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        list(out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot use the output folder {out}: {exc.strerror or exc}") from None


def notebook_number(path: str | Path, override: str | None = None) -> str | None:
    """NN from a file name (`03_quantization_theory.ipynb`, `alice_03_....ipynb`), or `override`."""
    if override:
        return f"{int(override):02d}"
    m = _NOTEBOOK_NUMBER.search(Path(path).name)
    return m.group(1) if m else None


@dataclass
class _Item:
    """One submission of the batch and what the plan found out about it."""
    path: Path
    label: str             # how reports name it: the path relative to here, when it is below here
    key: str               # its file name under results/ and feedback/
    number: str | None
    preps: list[Prepared] = field(default_factory=list)
    raw: bytes = b""
    sha: str = ""
    fingerprint: str = ""
    solutions: dict = field(default_factory=dict)   # exercise id -> normalized solution (similarity)
    result: SubmissionResult | None = None   # settled by the plan, or graded


def grade_batch(paths: list[str | Path], out: str | Path, options: GradeOptions | None = None,
                registry: Mapping[str, Exercise] | None = None,
                progress: bool | None = None) -> list[SubmissionResult]:
    """Grade every submission; write DIR/grades.csv, DIR/grades.json, DIR/feedback/*.md.

    `registry` (exercise id -> Exercise) defaults to the course's specs. Submissions whose
    bytes and grading setup match a result already in DIR/results are not graded again.
    """
    options = options or GradeOptions()
    out = Path(out)
    items = batch = _items(find_submissions(paths), options)
    try:
        isolation = resolve(options.isolation)
    except (IsolationError, ValueError) as exc:
        raise UsageError(f"--isolation {options.isolation}: {exc}") from None
    prepare_out(out)
    if options.shard is not None:
        items = shards.select(batch, *options.shard)
    registry = dict(registry) if registry is not None else load_registry()
    prepared = {i: prepare(e) for i, e in registry.items() if e.notebook in {it.number for it in items}}
    bar = Progress(len(items), enabled=progress)
    for item in items:
        _plan(item, prepared, options, out, isolation)
        if item.result is not None:
            bar.update(item.result.status, reused=item.result.reused)
    masked = Path(tempfile.mkdtemp(prefix="coursekit-masked-")) if isolation.isolated else None
    try:
        confinement = Confinement(isolation, build_masked(masked / "exercises") if masked else None)
        _grade_all([it for it in items if it.result is None], options, out, bar, confinement)
    finally:
        bar.close()
        if masked is not None:
            shutil.rmtree(masked, ignore_errors=True)
    done = [(it.key, it.result) for it in items if it.result is not None]
    if options.shard is not None:
        shards.write_manifest(out, batch, items, options.shard, isolation)
    write_reports(out, done, registry, isolation, options)
    return [r for _, r in done]


def _items(subs: list[Path], options: GradeOptions) -> list[_Item]:
    labels = [_label(p) for p in subs]
    keys = [_key(lbl) for lbl in labels]
    for i, k in enumerate(keys):  # two labels that sanitize alike: tell them apart
        if keys.count(k) > 1:
            keys[i] = f"{k}-{hashlib.sha1(labels[i].encode()).hexdigest()[:6]}"
    return [_Item(p, lbl, k, notebook_number(p, options.notebook)) for p, lbl, k in zip(subs, labels, keys)]


def _label(path: Path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path.resolve())


def _key(label: str) -> str:
    stem = label[:-6] if label.endswith(".ipynb") else label
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("_.") or "submission"


def _plan(item: _Item, prepared: dict[str, Prepared], options: GradeOptions, out: Path,
          isolation: Isolation) -> None:
    """Read the submission; settle `item.result` when no kernel is needed for it."""
    try:
        item.raw = item.path.read_bytes()
    except OSError as exc:
        item.result = SubmissionResult(item.label, str(item.path), "", item.number, RunStatus.INVALID,
                                       f"the file could not be read: {exc.strerror or exc}")
        return
    item.sha = hashlib.sha256(item.raw).hexdigest()
    item.preps = [p for p in prepared.values() if p.ex.notebook == item.number]
    setup = repr((GRADER_VERSION, options.timeout, options.memory_mb, options.exercise_timeout,
                  options.file_mb, options.output_kb, isolation.isolated)) + repr([p.fingerprint for p in item.preps])
    item.fingerprint = hashlib.sha256(setup.encode()).hexdigest()[:16]
    item.solutions = similarity.solution_hashes(item.raw, [p.ex for p in item.preps])
    old = load_previous(out / "results" / f"{item.key}.json", item.sha, item.fingerprint)
    if old is not None:
        old.submission, old.path, old.reused = item.label, str(item.path), True
        item.result = old
    elif item.number is None or not item.preps:
        why = ("its file name does not start with the notebook number (NN_...)" if item.number is None
               else f"there are no exercises for notebook {item.number}")
        item.result = SubmissionResult(item.label, str(item.path), item.sha, item.number, RunStatus.INVALID,
                                       f"cannot tell which exercises to grade: {why}.",
                                       fingerprint=item.fingerprint, solutions=item.solutions)
        save(out, item.key, item.result)


def _grade_all(todo: list[_Item], options: GradeOptions, out: Path, bar, confinement: Confinement) -> None:
    """Grade `todo`, `options.jobs` at a time; each result is saved the moment it is ready."""
    pool = ThreadPoolExecutor(max_workers=max(1, int(options.jobs)))
    try:
        futures = {pool.submit(_grade_one, item, options, out, confinement): item for item in todo}
        for f in as_completed(futures):
            futures[f].result = f.result()
            bar.update(futures[f].result.status)
    except BaseException:  # Ctrl-C: stop the runs in flight now (finished results are kept)
        pool.shutdown(wait=False, cancel_futures=True)
        InFlight.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)


def _grade_one(item: _Item, options: GradeOptions, out: Path, confinement: Confinement) -> SubmissionResult:
    try:
        r = grade_submission(item.path, item.preps, options, item.label, item.sha, item.raw,
                             item.number, item.fingerprint, confinement)
    except Exception as exc:  # a bug of ours: report it on this row, keep the batch going
        return SubmissionResult(item.label, str(item.path), item.sha, item.number, RunStatus.ERROR,
                                f"the grader failed on this submission: {type(exc).__name__}: {exc}")
    r.solutions = item.solutions
    save(out, item.key, r)
    return r
