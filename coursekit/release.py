"""Learner copies of the master notebooks: solutions stubbed out, exercise outputs cleared.

A master holds each exercise's solution between two marker lines, inside the function body:

    def dequantize(codes, scale, zero_point):
        ### BEGIN SOLUTION
        return scale * (codes.float() - zero_point)
        ### END SOLUTION

In the learner copy the markers and everything between them become a stub, indented like the
markers, so the function still parses and tells the learner it is not done:

    def dequantize(codes, scale, zero_point):
        # YOUR CODE HERE
        raise NotImplementedError

The outputs of exercise cells (cells with solution markers, and cells calling `check(`) are
cleared, because they would show the solution's results. Every other output stays: learners
see the figures and tables without running anything.

Release is a pure function of the master's bytes: the same master always gives the same learner
copy, byte for byte, so a test can tell when the committed copies are stale.

Before that, release points every master's Colab badge and install line at the repository the
course is published from (`coursekit.publishing`: one setting in pyproject.toml, changed with
`--repo OWNER/NAME@REF`), so masters and learner copies always name the same place.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from .publishing import CourseRepo, disagreements, find_project, publish_notebook, read_setting, write_setting

__all__ = ["ReleaseError", "stub_solutions", "is_exercise_cell", "release_notebook", "release_text",
           "release", "stale_copies", "publish_masters", "course_repo", "BEGIN", "END", "STUB"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")
_CHECK_CALL = re.compile(r"(?<![\w.])check\s*\(")
_MASTER_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")


class ReleaseError(ValueError):
    """A master notebook whose solution markers do not pair up."""


def _is_marker(line: str, marker: str) -> bool:
    return line.strip() == marker


def stub_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block (markers included) with the stub."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    inside = False
    begin_line = 0
    for n, line in enumerate(lines, start=1):
        if _is_marker(line, BEGIN):
            if inside:
                raise ReleaseError(f"{where}: line {n}: {BEGIN} inside another solution "
                                   f"(opened on line {begin_line})")
            inside, begin_line = True, n
            indent = line[: len(line) - len(line.lstrip())]
            continue
        if _is_marker(line, END):
            if not inside:
                raise ReleaseError(f"{where}: line {n}: {END} without a {BEGIN}")
            inside = False
            newline = "\n" if line.endswith("\n") else ""
            out.append(f"{indent}{STUB[0]}\n")
            out.append(f"{indent}{STUB[1]}{newline}")
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: line {begin_line}: {BEGIN} is never closed by {END}")
    return "".join(out)


def _is_exercise_cell(source: str) -> bool:
    has_marker = any(_is_marker(line, BEGIN) or _is_marker(line, END) for line in source.splitlines())
    return has_marker or bool(_CHECK_CALL.search(source))


def is_exercise_cell(cell) -> bool:
    """Whether release treats `cell` as an exercise (a solution to stub, or a `check(` to clear).

    Public so that other views of a master (the course website) mark the same cells as exercises.
    """
    if cell.get("cell_type") != "code":
        return False
    source = cell.get("source", "")
    return _is_exercise_cell(source if isinstance(source, str) else "".join(source))


def release_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner copy of a master (a new object; the master is left as it was)."""
    learner = nbformat.from_dict(nb)  # deep copy
    for i, cell in enumerate(learner.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if _is_exercise_cell(source):
            cell.source = stub_solutions(source, where=f"{name}: cell {i}")
            cell.outputs = []
            cell.execution_count = None
    return learner


def release_text(master: str | Path) -> str:
    """The learner copy of the master at `master`, as the exact text `release` writes."""
    path = Path(master)
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    return _notebook_text(release_notebook(nb, name=path.name))


def masters(src_dir: str | Path) -> list[Path]:
    """The master notebooks: `NN_topic.ipynb` directly in `src_dir` (never in sub-folders)."""
    return sorted(p for p in Path(src_dir).glob("*.ipynb") if p.is_file() and _MASTER_NAME.match(p.name))


def _notebook_text(nb) -> str:
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _write_if_changed(target: Path, data: bytes) -> None:
    if not target.exists() or target.read_bytes() != data:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)


def course_repo(src_dir: str | Path, repo: CourseRepo | str | None = None) -> CourseRepo | None:
    """The repository to publish from: `repo` when given (and then stored as the project's setting),
    else the setting of the project that holds `src_dir`; None outside such a project."""
    try:
        project = find_project(src_dir)
    except FileNotFoundError:
        project = None
    if repo is not None:
        repo = repo if isinstance(repo, CourseRepo) else CourseRepo.parse(repo)
        if project is not None:
            write_setting(project, repo)
        return repo
    return read_setting(project) if project is not None else None


def publish_masters(src_dir: str | Path, repo: CourseRepo) -> list[Path]:
    """Point every master's badge and install line at `repo`; return the masters that changed."""
    changed = []
    for master in masters(src_dir):
        text = master.read_text(encoding="utf-8")
        nb = publish_notebook(nbformat.reads(text, as_version=4), repo, master.name)
        new = _notebook_text(nb)
        if new != text:
            _write_if_changed(master, new.encode("utf-8"))
            changed.append(master)
    return changed


def release(src_dir: str | Path, out_dir: str | Path, prune: bool = True,
            repo: CourseRepo | str | None = None) -> list[Path]:
    """Write the learner copy of every master of `src_dir` into `out_dir`; return their paths.

    First the masters are pointed at the course's repository (`repo`, else the project's setting).
    Files are rewritten only when their bytes change. With `prune`, learner copies in `out_dir`
    whose master is gone are removed, so `out_dir` always mirrors the masters.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if src == out:
        raise ReleaseError("the output folder must not be the masters' folder")
    published = course_repo(src, repo)
    if published is not None:
        publish_masters(src, published)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = set()
    for master in masters(src):
        target = out / master.name
        wanted.add(target.name)
        _write_if_changed(target, release_text(master).encode("utf-8"))
        written.append(target)
    if prune:
        for old in out.glob("*.ipynb"):
            if _MASTER_NAME.match(old.name) and old.name not in wanted:
                old.unlink()
    return written


def stale_copies(src_dir: str | Path, out_dir: str | Path) -> list[str]:
    """What differs between the committed learner copies and a fresh release (empty: up to date)."""
    src, out = Path(src_dir), Path(out_dir)
    problems = []
    wanted = set()
    published = course_repo(src)
    for master in masters(src):
        wanted.add(master.name)
        if published is not None:
            nb = nbformat.reads(master.read_text(encoding="utf-8"), as_version=4)
            problems += [f"{master}: {p}" for p in disagreements(nb, published, master.name)]
        target = out / master.name
        if not target.exists():
            problems.append(f"{target} is missing")
        elif target.read_bytes() != release_text(master).encode("utf-8"):
            problems.append(f"{target} is stale")
    if out.is_dir():
        for old in sorted(out.glob("*.ipynb")):
            if old.name not in wanted:
                problems.append(f"{old} has no master")
    return problems
