"""The Sphinx extension of the course website (site/conf.py loads it as `coursesite.extension`).

Before Sphinx reads anything, the page notebooks are written into site/lessons/ from the executed
masters (pages.py; never re-executed), and the home page gets the repository's links and the table of
notebooks (home.py). After the build, MathJax's files are copied next to the pages (assets.py).
`course_solutions` (`make site SOLUTIONS=1`) shows the masters' solutions, for instructors only.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

from coursekit.publishing import CourseRepo

from . import assets, home, pages

logger = logging.getLogger(__name__)
PAGES_DIR = "lessons"


def _repo(app) -> CourseRepo:
    return CourseRepo.parse(app.config.course_repo)


def _write_pages(app, config) -> None:
    src = Path(app.srcdir)
    written = pages.write_pages(Path(config.course_notebooks), src / PAGES_DIR, _repo(app),
                                solutions=config.course_solutions)
    logger.info(f"coursesite: {len(written)} notebook pages in {PAGES_DIR}/ "
                f"({'with' if config.course_solutions else 'without'} solutions)")


def _fill_home(app, docname: str, source: list) -> None:
    """The home page's placeholders: the repository's links and the table of notebooks."""
    if docname != app.config.root_doc:
        return
    repo = _repo(app)
    table, undescribed = home.table(Path(app.config.course_notebooks), Path(app.config.course_readme), PAGES_DIR)
    for name in undescribed:
        logger.warning(f"coursesite: README's table of notebooks has no line on {name}")
    folder = repo.where.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    values = {"%%REPO_URL%%": repo.git_url, "%%REPO_DIR%%": folder, "%%REF%%": repo.ref,
              "%%NOTEBOOK_TABLE%%": table}
    text = source[0]
    for key, value in values.items():
        text = text.replace(key, value)
    source[0] = text


def _home_is_always_read(app, env, added, changed, removed) -> list[str]:
    """The home page's table comes from the README and the masters, which Sphinx does not watch:
    read it again on every build (one short page), so an incremental build never shows a stale table."""
    return [app.config.root_doc]


def _copy_assets(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        assets.copy_mathjax(Path(app.outdir) / "_static")


def setup(app):
    app.add_config_value("course_repo", "", "env", types=[str])
    app.add_config_value("course_notebooks", "", "env", types=[str])
    app.add_config_value("course_readme", "", "env", types=[str])
    app.add_config_value("course_solutions", False, "env", types=[bool])
    app.connect("config-inited", _write_pages)
    app.connect("source-read", _fill_home)
    app.connect("env-get-outdated", _home_is_always_read)
    app.connect("build-finished", _copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
