"""Where the course is published: one setting behind every Colab badge and install line.

A learner opens a notebook from its Colab badge, and the notebook's first code cell installs
coursekit from the same repository. Both must name the repository the instructor published, so the
repository is a single setting, in pyproject.toml:

    [tool.coursekit]
    repo = "OWNER/NAME@BRANCH"

`coursekit release notebooks --out notebooks/learner --repo OWNER/NAME@BRANCH` writes the setting,
rewrites the badge and install line of every master, and releases learner copies that carry them.
Until an instructor sets it, the setting holds `PLACEHOLDER`, which no one could mistake for a real
repository. Besides GitHub's `OWNER/NAME`, a git URL (`file:///path/to/clone`, `https://host/x.git`)
is accepted, with an optional `@REF`: tests point the install line at a local clone this way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CourseRepo", "PLACEHOLDER", "find_project", "read_setting", "write_setting",
           "publish_notebook", "disagreements"]

PLACEHOLDER = "OWNER/REPO@main"
SETTING_TABLE = "[tool.coursekit]"

_GITHUB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_BADGE_LINK = re.compile(r"(\[!\[Open In Colab\]\([^)]*\)\]\()([^)\s]*)(\))")
_INSTALL = re.compile(r'(%pip install -q ")coursekit @ [^"]*(")')
_SETTING_LINE = re.compile(r'^(repo\s*=\s*)"[^"\n]*"', re.M)


@dataclass(frozen=True)
class CourseRepo:
    """A repository (GitHub OWNER/NAME or a git URL) and the branch, tag or commit to use."""
    where: str
    ref: str = "main"

    @classmethod
    def parse(cls, text: str) -> "CourseRepo":
        """`OWNER/NAME`, `OWNER/NAME@REF`, or a git URL with an optional `@REF` after its path."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"repo: expected OWNER/NAME[@REF] or a git URL, got {text!r}")
        text = text.strip()
        where, ref = text, "main"
        at = text.rfind("@")
        if at > text.rfind("/"):           # an @ after the last slash separates the ref
            where, ref = text[:at], text[at + 1:]
        if not ref or any(c in ref for c in ' "\'\\'):
            raise ValueError(f"repo: the ref after @ must be a branch, tag or commit, got {ref!r}")
        if "://" not in where and not _GITHUB.match(where):
            raise ValueError(f"repo: expected OWNER/NAME[@REF] (a GitHub repository) or a git URL "
                             f"such as file:///path/to/clone, got {text!r}")
        return cls(where.removesuffix("/"), ref)

    def __str__(self) -> str:
        return f"{self.where}@{self.ref}"

    @property
    def is_github(self) -> bool:
        return "://" not in self.where

    @property
    def is_placeholder(self) -> bool:
        return str(self) == PLACEHOLDER

    @property
    def git_url(self) -> str:
        return f"https://github.com/{self.where}" if self.is_github else self.where

    @property
    def install_requirement(self) -> str:
        """What the setup cell gives pip: `coursekit @ git+URL@REF`."""
        return f"coursekit @ git+{self.git_url}@{self.ref}"

    def badge_url(self, notebook: str) -> str:
        """Where a learner copy's Colab badge points (Colab opens GitHub notebooks only)."""
        path = f"notebooks/learner/{notebook}"
        if self.is_github:
            return f"https://colab.research.google.com/github/{self.where}/blob/{self.ref}/{path}"
        return f"{self.where}/{path}"


def find_project(start: str | Path) -> Path:
    """The nearest folder at or above `start` whose pyproject.toml holds the [tool.coursekit] table."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and SETTING_TABLE in pyproject.read_text(encoding="utf-8"):
            return folder
    raise FileNotFoundError(f"no pyproject.toml with a {SETTING_TABLE} table at or above {start}")


def read_setting(project: str | Path) -> CourseRepo:
    """The repository the course is published from, as pyproject.toml's [tool.coursekit] repo says."""
    import tomllib
    with open(Path(project) / "pyproject.toml", "rb") as f:
        value = tomllib.load(f).get("tool", {}).get("coursekit", {}).get("repo")
    if value is None:
        raise ValueError(f"{project}/pyproject.toml: {SETTING_TABLE} has no `repo = \"OWNER/NAME@REF\"`")
    return CourseRepo.parse(value)


def write_setting(project: str | Path, repo: CourseRepo) -> bool:
    """Store `repo` as the setting; return whether the file changed."""
    path = Path(project) / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    table = text.index(SETTING_TABLE)
    head, tail = text[:table], text[table:]
    new_tail, n = _SETTING_LINE.subn(lambda m: f'{m[1]}"{repo}"', tail, count=1)
    if n == 0:
        raise ValueError(f"{path}: {SETTING_TABLE} has no `repo = \"...\"` line to update")
    if new_tail == tail:
        return False
    path.write_text(head + new_tail, encoding="utf-8")
    return True


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def publish_notebook(nb, repo: CourseRepo, notebook: str):
    """Point `nb`'s Colab badge and install line at `repo` (in place); return `nb`."""
    for cell in nb.cells:
        source = _source(cell)
        if cell.cell_type == "markdown":
            source = _BADGE_LINK.sub(lambda m: m[1] + repo.badge_url(notebook) + m[3], source)
        elif cell.cell_type == "code":
            source = _INSTALL.sub(lambda m: m[1] + repo.install_requirement + m[2], source)
        cell.source = source
    return nb


def disagreements(nb, repo: CourseRepo, notebook: str) -> list[str]:
    """Every badge or install line of `nb` that does not point at `repo` (empty: all agree)."""
    problems, badges, installs = [], 0, 0
    for cell in nb.cells:
        source = _source(cell)
        for m in _BADGE_LINK.finditer(source) if cell.cell_type == "markdown" else ():
            badges += 1
            if m[2] != repo.badge_url(notebook):
                problems.append(f"{notebook}: badge points to {m[2]}, expected {repo.badge_url(notebook)}")
        for line in source.splitlines() if cell.cell_type == "code" else ():
            if "pip install" in line and "coursekit" in line:
                installs += 1
                if f'"{repo.install_requirement}"' not in line:
                    problems.append(f"{notebook}: install line {line.strip()!r} does not install "
                                    f"{repo.install_requirement!r}")
    if badges != 1:
        problems.append(f"{notebook}: expected one Colab badge, found {badges}")
    if installs != 1:
        problems.append(f"{notebook}: expected one coursekit install line, found {installs}")
    return problems
