"""The home page's table of notebooks: each master's own title, and the README's line on it.

The README already says in one line what each notebook does; the site reuses that line rather than
keep a second copy in step. A notebook the README does not list yet still gets its row (and a build
warning), so a new notebook is never missing from the home page.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from coursekit.release import masters

_ROW = re.compile(r"^\|\s*\d+\s*\|\s*\[[^\]]*\]\(notebooks/(?P<file>[^)]+\.ipynb)\)\s*\|\s*(?P<what>.*?)\s*\|\s*$", re.M)
_TITLE = re.compile(r"^#\s+(?P<title>.+)$", re.M)


def readme_lines(readme: Path) -> dict[str, str]:
    """{notebook file name: what you do in it}, from the README's table of notebooks."""
    return {m["file"]: m["what"] for m in _ROW.finditer(readme.read_text(encoding="utf-8"))}


def title(master: Path) -> str:
    """The notebook's `# NN · Title` heading (what the page and the sidebar show)."""
    nb = nbformat.read(master, as_version=4)
    m = _TITLE.search(nb.cells[0].source) if nb.cells else None
    return m["title"].strip() if m else master.stem


def table(notebooks: Path, readme: Path, pages: str) -> tuple[str, list[str]]:
    """The table as MyST markdown (links to the pages under the folder `pages`), and the names of
    notebooks the README does not describe."""
    lines = readme_lines(readme)
    rows = ["| notebook | what you do |", "|---|---|"]
    undescribed = []
    for master in masters(notebooks):
        what = lines.get(master.name)
        if what is None:
            undescribed.append(master.name)
        rows.append(f"| [{title(master)}]({pages}/{master.name}) | {what or ''} |")
    return "\n".join(rows) + "\n", undescribed
