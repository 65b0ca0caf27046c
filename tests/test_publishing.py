"""One setting says where the course lives; every badge and install line follows it."""
import shutil
from pathlib import Path

import nbformat
import pytest

from coursekit import cli
from coursekit.publishing import PLACEHOLDER, CourseRepo, disagreements, read_setting

ROOT = Path(__file__).resolve().parents[1]


def _all_notebooks(root):
    return sorted((root / "notebooks").glob("[0-9]*.ipynb")) + sorted((root / "notebooks" / "learner").glob("*.ipynb"))


def test_every_badge_and_install_line_follows_the_setting():
    repo = read_setting(ROOT)
    notebooks = _all_notebooks(ROOT)
    assert len(notebooks) >= 18
    problems = [p for path in notebooks
                for p in disagreements(nbformat.read(path, as_version=4), repo, path.name)]
    assert problems == [], "run `make release` after changing the setting:\n" + "\n".join(problems)


def test_readme_says_what_an_instructor_sets():
    readme = (ROOT / "README.md").read_text()
    assert "--repo" in readme and "[tool.coursekit]" in readme
    if read_setting(ROOT).is_placeholder:
        assert PLACEHOLDER in readme  # says plainly that the course is not published yet


@pytest.mark.parametrize("text, install, badge_start", [
    ("me/course", "coursekit @ git+https://github.com/me/course@main",
     "https://colab.research.google.com/github/me/course/blob/main/"),
    ("me/course@v2", "coursekit @ git+https://github.com/me/course@v2",
     "https://colab.research.google.com/github/me/course/blob/v2/"),
    ("file:///tmp/clone@HEAD", "coursekit @ git+file:///tmp/clone@HEAD", "file:///tmp/clone/"),
    ("https://user@git.example.org/course.git", "coursekit @ git+https://user@git.example.org/course.git@main",
     "https://user@git.example.org/course.git/"),
])
def test_repo_forms(text, install, badge_start):
    repo = CourseRepo.parse(text)
    assert repo.install_requirement == install
    assert repo.badge_url("01_x.ipynb").startswith(badge_start)
    assert repo.badge_url("01_x.ipynb").endswith("notebooks/learner/01_x.ipynb")


@pytest.mark.parametrize("text", ["", "course", "me/course@", "a/b/c", "me/course@has space", None])
def test_bad_repo_names_the_argument(text):
    with pytest.raises(ValueError, match="repo"):
        CourseRepo.parse(text)


@pytest.fixture
def project(tmp_path):
    """A copy of the course's notebooks and pyproject.toml, to publish without touching the real ones."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "notebooks").mkdir()
    for master in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))[:2]:
        shutil.copy(master, tmp_path / "notebooks" / master.name)
    return tmp_path


def test_release_with_repo_publishes_masters_and_learner_copies(project, capsys):
    nbs, out = project / "notebooks", project / "notebooks" / "learner"
    assert cli.main(["release", str(nbs), "--out", str(out), "--repo", "teacher/quant-course@spring"]) == 0
    repo = read_setting(project)
    assert str(repo) == "teacher/quant-course@spring"
    notebooks = _all_notebooks(project)
    assert len(notebooks) == 4
    for path in notebooks:
        assert disagreements(nbformat.read(path, as_version=4), repo, path.name) == []
        text = path.read_text()
        assert "https://colab.research.google.com/github/teacher/quant-course/blob/spring/notebooks/learner/" in text
        assert "git+https://github.com/teacher/quant-course@spring" in text
    assert "badges and install lines point to teacher/quant-course@spring" in capsys.readouterr().out
    # the setting is remembered: a plain release and --check agree with it
    assert cli.main(["release", str(nbs), "--out", str(out)]) == 0
    assert cli.main(["release", str(nbs), "--out", str(out), "--check"]) == 0


def test_check_fails_when_a_master_disagrees(project, capsys):
    nbs, out = project / "notebooks", project / "notebooks" / "learner"
    assert cli.main(["release", str(nbs), "--out", str(out)]) == 0
    master = sorted(nbs.glob("*.ipynb"))[0]
    master.write_text(master.read_text().replace("OWNER/REPO", "someone/else"))
    assert cli.main(["release", str(nbs), "--out", str(out), "--check"]) == 1
    assert "badge points to" in capsys.readouterr().err


def test_bad_repo_is_a_usage_error(project, capsys):
    nbs = project / "notebooks"
    assert cli.main(["release", str(nbs), "--out", str(nbs / "learner"), "--repo", "not a repo"]) == 2
    assert "repo: expected OWNER/NAME[@REF]" in capsys.readouterr().err
    assert read_setting(project).is_placeholder


_NUMBER_WORDS = {10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
                 16: "sixteen"}


def test_the_front_page_counts_and_lists_every_notebook():
    """README's first line says how many notebooks there are, and its table links each one."""
    readme = (ROOT / "README.md").read_text()
    masters = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    word = _NUMBER_WORDS.get(len(masters), str(len(masters)))
    assert f"A course in {word} Jupyter notebooks" in readme, f"README should say {word} notebooks"
    missing = [name for name in masters if f"(notebooks/{name})" not in readme]
    assert missing == [], f"README's notebook table misses {missing}"
