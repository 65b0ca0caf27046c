"""`coursekit release`: learner copies, their determinism, that they run, and that the committed
copies in notebooks/learner/ are not stale."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest

from coursekit import release as rel
from coursekit.cli import main

ROOT = Path(__file__).resolve().parents[1]

SOLUTION_CELL = textwrap.dedent('''\
    def double(x):
        """Twice x."""
        ### BEGIN SOLUTION
        y = 2 * x
        return y
        ### END SOLUTION


    class Scaler:
        def __call__(self, x):
                ### BEGIN SOLUTION
                return x * 3
                ### END SOLUTION''')


def make_master(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    md = nbformat.v4.new_markdown_cell("# 01 · Demo\n\nText with `check(` in markdown stays.")
    setup = nbformat.v4.new_code_cell("from coursekit.exercises import check\nvalues = [1, 2, 3]\nprint(values)")
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="[1, 2, 3]\n")]
    setup.execution_count = 1
    solution = nbformat.v4.new_code_cell(SOLUTION_CELL)
    solution.execution_count = 2
    checking = nbformat.v4.new_code_cell('check("01.double", double)')
    checking.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✅ 01.double: passed\n")]
    checking.execution_count = 3
    later = nbformat.v4.new_code_cell("total = sum(2 * v for v in values)  # not double(): see AUTHORING.md\n"
                                      "print(total)")
    later.outputs = [nbformat.v4.new_output("stream", name="stdout", text="12\n")]
    later.execution_count = 4
    nb.cells = [md, setup, solution, checking, later]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    nbformat.write(nb, path)
    return path


def test_stub_keeps_the_markers_indentation():
    out = rel.stub_solutions(SOLUTION_CELL)
    assert "### BEGIN SOLUTION" not in out and "2 * x" not in out and "x * 3" not in out
    assert "    # YOUR CODE HERE\n    raise NotImplementedError\n" in out
    assert "            # YOUR CODE HERE\n            raise NotImplementedError" in out
    assert out.endswith("raise NotImplementedError")  # no newline added where there was none
    assert '"""Twice x."""' in out and "class Scaler:" in out
    compile(out, "learner", "exec")  # still valid Python


@pytest.mark.parametrize("source", ["### BEGIN SOLUTION\nx = 1\n",
                                    "x = 1\n### END SOLUTION\n",
                                    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n"])
def test_unpaired_markers_are_an_error(source):
    with pytest.raises(rel.ReleaseError):
        rel.stub_solutions(source)


def test_release_clears_exercise_outputs_and_keeps_the_rest(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    make_master(src / "01_demo.ipynb")
    (src / "learner").mkdir()
    make_master(src / "learner" / "02_nested.ipynb")       # not a master: sub-folders are ignored
    (src / "scratch.ipynb").write_text("{}")                # not NN_topic: ignored
    out = tmp_path / "out"
    written = rel.release(src, out)
    assert [p.name for p in written] == ["01_demo.ipynb"]
    learner = nbformat.read(out / "01_demo.ipynb", as_version=4)
    md, setup, solution, checking, later = learner.cells
    assert md.source.startswith("# 01 · Demo")
    assert setup.outputs[0]["text"] == "[1, 2, 3]\n" and setup.execution_count == 1
    assert solution.outputs == [] and solution.execution_count is None
    assert "raise NotImplementedError" in solution.source and "2 * x" not in solution.source
    assert checking.outputs == [] and checking.execution_count is None
    assert checking.source == 'check("01.double", double)'
    assert later.outputs[0]["text"] == "12\n" and later.execution_count == 4
    assert [c.id for c in learner.cells] == [f"cell-{i}" for i in range(5)]
    master = nbformat.read(src / "01_demo.ipynb", as_version=4)
    assert "2 * x" in master.cells[2].source  # the master is untouched


def test_release_is_deterministic_and_prunes(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    make_master(src / "01_demo.ipynb")
    rel.release(src, out)
    first = (out / "01_demo.ipynb").read_bytes()
    rel.release(src, out)
    assert (out / "01_demo.ipynb").read_bytes() == first
    assert rel.release_text(src / "01_demo.ipynb").encode() == first
    (out / "09_gone.ipynb").write_text("{}")
    assert rel.stale_copies(src, out) == [f"{out / '09_gone.ipynb'} has no master"]
    rel.release(src, out)
    assert not (out / "09_gone.ipynb").exists() and rel.stale_copies(src, out) == []
    with pytest.raises(rel.ReleaseError):
        rel.release(src, src)


def test_cli_release_and_check(tmp_path, capsys):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    make_master(src / "01_demo.ipynb")
    assert main(["release", str(src), "--out", str(out), "--check"]) == 1  # nothing released yet
    assert main(["release", str(src), "--out", str(out)]) == 0
    assert main(["release", str(src), "--out", str(out), "--check"]) == 0
    assert main(["release", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_an_unanswered_exercise_is_not_done(tmp_path, monkeypatch):
    """The stub raises NotImplementedError, which `check` reports as "not done yet"."""
    import coursekit.exercises as ce
    from coursekit.exercises.spec import Exercise
    ex = Exercise(id="01.double", name="double", reference=lambda x: 2 * x, cases=lambda: [(1,), (2,)])
    monkeypatch.setattr(ce, "_REGISTRY", {ex.id: ex})
    ns: dict = {}
    exec(rel.stub_solutions(SOLUTION_CELL), ns)
    result = ce.evaluate("01.double", ns["double"])
    assert result.status == "not_done" and "not done yet" in result.message


def test_a_learner_copy_runs_top_to_bottom(tmp_path):
    """Executed with nbclient (errors not allowed): unanswered exercises must not stop it."""
    from nbclient import NotebookClient
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    make_master(src / "01_demo.ipynb")
    rel.release(src, out)
    nb = nbformat.read(out / "01_demo.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=180, allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[4].outputs[0]["text"] == "12\n"
    assert nb.cells[3].outputs  # check printed its verdict instead of raising


def test_committed_learner_copies_are_up_to_date():
    """notebooks/learner/ must be exactly what `make release` writes from the masters."""
    problems = rel.stale_copies(ROOT / "notebooks", ROOT / "notebooks" / "learner")
    assert not problems, "learner copies are stale; run `make release`:\n" + "\n".join(problems)
