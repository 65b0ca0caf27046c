"""The course website's pages as notebooks, before Sphinx sees them (site/coursesite; no Sphinx needed).

What a learner must not see on the default site (solutions, a `check` that says "passed"), what an
instructor's build must show, where the links point, and what becomes of widgets.
`make test-site` then checks the built site in a browser (tests/browser/test_site.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from coursekit.publishing import CourseRepo
from coursekit.release import BEGIN, STUB, is_exercise_cell, masters, release_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "site"))

from coursesite import home, pages, widgets  # noqa: E402

MASTERS = masters(ROOT / "notebooks")
FORK = CourseRepo.parse("someone/their-fork@autumn")


@pytest.fixture(scope="module", params=[m.name for m in MASTERS])
def master(request) -> Path:
    return ROOT / "notebooks" / request.param


def test_is_exercise_cell_names_the_cells_release_clears(master):
    nb = nbformat.read(master, as_version=4)
    learner = release_notebook(nb, name=master.name)
    cleared = [c.cell_type == "code" and m.execution_count is not None and c.execution_count is None
               for m, c in zip(nb.cells, learner.cells)]
    assert [is_exercise_cell(c) for c in nb.cells] == cleared
    assert any(cleared), f"{master.name} has no exercise"


def test_learner_page_shows_the_exercises_as_the_learner_copy_does(master):
    nb = nbformat.read(master, as_version=4)
    page = pages.page_notebook(master, FORK)
    learner = release_notebook(nb, name=master.name)
    assert len(page.cells) == len(nb.cells)
    for i, (m, p, l) in enumerate(zip(nb.cells, page.cells, learner.cells)):
        assert BEGIN not in p.source, f"{master.name} cell {i}: a solution on the learner site"
        if is_exercise_cell(m):
            assert p.metadata["tags"] == ["exercise"] and p.outputs == [], f"cell {i}"
            assert p.source == l.source
            if BEGIN in m.source:
                assert STUB[0] in p.source and STUB[1] in p.source
        elif p.cell_type == "code" and i > 1:    # the install line (cell 1) points at the fork
            assert p.source == m.source, f"{master.name} cell {i}"
            widget = any(widgets.WIDGET_VIEW in o.get("data", {}) for o in m.outputs)
            if not widget:
                assert p.outputs == m.outputs, f"{master.name} cell {i}: stored outputs changed"


def test_solutions_page_shows_solutions_and_their_checks(master):
    nb = nbformat.read(master, as_version=4)
    page = pages.page_notebook(master, FORK, solutions=True)
    exercises = [(m, p) for m, p in zip(nb.cells, page.cells) if is_exercise_cell(m)]
    assert all(p.source == m.source and p.metadata["tags"] == ["exercise"] for m, p in exercises)
    checks = [p for m, p in exercises if BEGIN not in m.source and m.outputs]
    assert checks and all(p.outputs == m.outputs for m, p in exercises if BEGIN not in m.source)


def test_page_links_follow_the_repository_setting(master):
    page = pages.page_notebook(master, FORK)
    header = page.cells[0].source
    assert f"]({FORK.badge_url(master.name)})" in header
    assert "](../_static/colab-badge.svg)" in header, "the badge image must be the site's own, by a relative path"
    assert f"../../notebooks/learner/{master.name}>`" in header      # the download link
    assert (ROOT / "notebooks" / "learner" / master.name).is_file()
    setup = next(c for c in page.cells if c.cell_type == "code")
    assert FORK.install_requirement in setup.source
    text = nbformat.writes(page)
    assert "colab.research.google.com/assets" not in text, "a remote image left on the page"


def test_widgets_become_their_stored_readouts():
    master = ROOT / "notebooks" / "03_quantization_theory.ipynb"
    page = pages.page_notebook(master, FORK)
    assert "widgets" not in page.metadata
    text = nbformat.writes(page)
    assert widgets.WIDGET_VIEW not in text
    shown = [o["data"]["text/html"] for c in page.cells for o in c.get("outputs", [])
             if "course-widget-static" in o.get("data", {}).get("text/html", "")]
    assert len(shown) == 1
    assert widgets.NOTE in shown[0].replace("&#x27;", "'") and "data:image/png;base64," in shown[0]
    assert "MSE = " in shown[0] and "granularity = per_tensor" in shown[0]


def test_a_widget_without_saved_state_says_to_run_the_notebook():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        widgets.WIDGET_VIEW: {"model_id": "gone", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(...)"})]
    nb.cells = [cell]
    html = widgets.static_widgets(nb).cells[0].outputs[0]["data"]["text/html"]
    assert "open the notebook" in html and "<img" not in html


def test_home_table_lists_every_notebook_with_the_readme_line(tmp_path):
    table, undescribed = home.table(ROOT / "notebooks", ROOT / "README.md", "lessons")
    assert undescribed == []
    rows = table.strip().splitlines()[2:]
    assert [r.split("](lessons/")[1].split(")")[0] for r in rows] == [m.name for m in MASTERS]
    assert all(r.rstrip(" |").split("|")[-1].strip() for r in rows), "a row without its README line"
    readme = tmp_path / "README.md"
    readme.write_text("no table here\n")
    assert home.table(ROOT / "notebooks", readme, "lessons")[1] == [m.name for m in MASTERS]


def test_write_pages_rewrites_only_what_changed(tmp_path):
    out = tmp_path / "lessons"
    (out).mkdir()
    (out / "99_gone.ipynb").write_text("{}")
    written = pages.write_pages(ROOT / "notebooks", out, FORK)
    assert sorted(p.name for p in out.glob("*.ipynb")) == [m.name for m in MASTERS] == [p.name for p in written]
    stamps = {p: p.stat().st_mtime_ns for p in written}
    pages.write_pages(ROOT / "notebooks", out, FORK)
    assert {p: p.stat().st_mtime_ns for p in written} == stamps


def test_site_pins_agree_with_the_course_pins():
    """The site's venv shares some packages with the course's (nbformat, ipykernel): same versions."""
    import re
    pins = lambda name: dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / name).read_text(), re.M))
    site = pins("requirements-site.txt")
    course = {**pins("requirements.txt"), **pins("requirements-dev.txt")}
    shared = site.keys() & course.keys()
    assert {"nbformat", "nbclient", "ipykernel"} <= shared
    assert {n: site[n] for n in shared} == {n: course[n] for n in shared}
