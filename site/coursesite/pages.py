"""One web page per master notebook: what a learner sees, from the outputs that were tested.

The site never runs a notebook. Each master's stored outputs are the ones `make test` compared, so a
page shows exactly those. What changes on the way to the page:

* exercises look as they do in the learner copy: `coursekit.release.release_notebook` stubs the
  solutions and clears the outputs of exercise cells (a `check(...)` output would say "passed",
  which a learner has not earned yet). With `solutions=True` (an instructor's build) the master is
  shown as it is, solutions and their checks included;
* exercise cells carry the tag `exercise`, which the page styles as "your turn";
* the Colab badge and the install line point where `[tool.coursekit] repo` says
  (`coursekit.publishing`), the badge image is the site's own copy (a page loads nothing from the
  network), and a download link for the learner copy sits next to it;
* widgets, which need a kernel, become their stored read-outs (`widgets.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from coursekit.publishing import CourseRepo, publish_notebook
from coursekit.release import is_exercise_cell, masters, release_notebook

from .widgets import static_widgets

EXERCISE_TAG = "exercise"
_REMOTE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)\s]*)\)")


def _header_links(source: str, name: str) -> str:
    """The badge with the site's own image, then the link to download the learner copy."""
    download = (f"{{download}}`Download the learner notebook <../../notebooks/learner/{name}>`")

    def swap(m: re.Match) -> str:
        # relative: a GitHub Pages project site lives under /REPO/, where /_static/ is someone else's
        return f"[![Open In Colab](../_static/colab-badge.svg)]({m[1]}) &nbsp; {download}"

    new, n = _BADGE.subn(swap, source, count=1)
    if n == 0:
        raise ValueError(f"{name}: no Colab badge in the first cell; the page would have no links")
    return new


def page_notebook(master: Path, repo: CourseRepo, solutions: bool = False) -> nbformat.NotebookNode:
    """The notebook a page renders, built from `master` (which is left as it was)."""
    nb = nbformat.read(master, as_version=4)
    publish_notebook(nb, repo, master.name)
    exercises = [is_exercise_cell(cell) for cell in nb.cells]
    if not solutions:
        nb = release_notebook(nb, name=master.name)
    for cell, exercise in zip(nb.cells, exercises):
        if exercise:
            tags = cell.metadata.setdefault("tags", [])
            if EXERCISE_TAG not in tags:
                tags.append(EXERCISE_TAG)
    first = nb.cells[0]
    first.source = _header_links(first.source, master.name)
    return static_widgets(nb)


def write_pages(notebooks: Path, out: Path, repo: CourseRepo, solutions: bool = False) -> list[Path]:
    """Write the page notebook of every master into `out`; rewrite a file only when it changed
    (so Sphinx re-renders only those), and remove pages whose master is gone."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for master in masters(notebooks):
        target = out / master.name
        text = nbformat.writes(page_notebook(master, repo, solutions), version=4)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    for old in out.glob("*.ipynb"):
        if old not in written:
            old.unlink()
    return written
