"""The pinned environment is written down in three places; they must agree."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pins(text):
    return dict(re.findall(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", text, flags=re.M))


def test_environment_yml_matches_requirements():
    req = {}
    for name in ("requirements-torch.txt", "requirements.txt", "requirements-dev.txt"):
        req.update(_pins((ROOT / name).read_text()))
    env = _pins((ROOT / "environment.yml").read_text())
    env.pop("python", None)
    assert env == req


def test_every_notebook_has_badge_and_setup_cell():
    import nbformat
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0].source
        assert "colab-badge.svg" in first and f"notebooks/learner/{path.name}" in first, path.name
        setup = next(c for c in nb.cells if c.cell_type == "code")
        assert "google.colab" in setup.source and "pip install" in setup.source, path.name
        assert "torch" not in setup.source.split("pip install", 1)[1].split("\n")[0].replace("coursekit", ""), path.name
