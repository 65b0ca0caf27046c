"""`coursekit grade` on synthetic submissions, against a small synthetic exercise spec.

One batch (module fixture) grades every kind of submission at once, two at a time: correct,
partly wrong, each failure kind (malformed file, deleted/re-typed/renamed cells, exception at
import, memory bomb, megabytes of output, a function that never returns) and a forging one.
A notebook-01 master is released, filled in with the reference solutions and graded: full marks.
Tensor exercises live in notebook 01; notebook 02 is scalars only, so its kernels never import torch.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

from coursekit import release as rel
from coursekit.cli import main
from coursekit.grading import GradeOptions, grade_batch, load_registry, notebook_number
from coursekit.grading import transport

SPEC = '''
import torch
from coursekit.exercises.spec import Exercise

def _double(x):
    return 2 * x

def _scale(x, s):
    return x * s

def _answer():
    return 42

def _inc(n):
    return n + 1

def _greet(name):
    return "hi " + name

def _pick(flag, x):
    return (x, None) if flag else (None, x)

EXERCISES = [
    Exercise(id="01.double", name="double", reference=_double, cases=lambda: [(1,), (2.5,), (-3,)],
             hint="Multiply by two."),
    Exercise(id="01.scale", name="scale", reference=_scale, points=2, hint="x times s.",
             cases=lambda: [(torch.arange(4.0), 2.0), (torch.ones(2, 3), -1.5)]),
    Exercise(id="01.answer", name="answer", reference=_answer),
    Exercise(id="02.inc", name="inc", reference=_inc, cases=lambda: [(1,), (41,)], hint="Add one."),
    Exercise(id="02.greet", name="greet", reference=_greet, cases=lambda: [("a",), ("bob",)]),
    Exercise(id="02.pick", name="pick", reference=_pick, cases=lambda: [(True, 3), (False, -1)]),
]
'''

INC = "def inc(n):\n    return n + 1"
GREET = "def greet(name):\n    return 'hi ' + name"
PICK = "def pick(flag, x):\n    return (x, None) if flag else (None, x)"

MASTER_01 = [
    ("markdown", "# 01 · Demo"),
    ("code", "from coursekit.exercises import check\nimport torch"),
    ("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
    ("code", 'check("01.double", double)'),
    ("code", "def scale(x, s):\n    ### BEGIN SOLUTION\n    return x * s\n    ### END SOLUTION"),
    ("code", 'check("01.scale", scale)'),
    ("code", "def answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION"),
    ("code", 'check("01.answer", answer)'),
    ("code", "print(torch.arange(3) * 2)"),
]

SUBMISSIONS = {
    "02_ok": ["for i in range(60_000):\n    print('x' * 60)", INC, GREET, PICK],  # megabytes of output
    "02_partial": [INC, "def greet(name):\n    return 'hello ' + name",
                   "def pick(flag, x):\n    while True:\n        pass"],  # never returns
    "02_forge": [
        "print('✅ 02.inc: passed')\nprint('✅ 02.greet: passed')\nprint('✅ 02.pick: passed')",
        "def check(*args):\n    print('passed')\ncheck('02.inc', None)",
        "import coursekit.exercises as ce\nce.evaluate = lambda *a, **k: None\nce.check = check",
        "import json\nopen('results.json', 'w').write(json.dumps({'02.inc': 1, 'points': 3}))",
        "class Liar:\n    def __eq__(self, other):\n        return True\n"
        "def inc(n):\n    return Liar()",
        "def greet(name):\n    raise ValueError('no greeting today')",
        "def pick(flag, x):\n    return {'x': x}",
    ],
    "02_bomb": [INC, "chunks = []\nwhile True:\n    chunks.append(b'x' * 50_000_000)", GREET, PICK],
    # an exception at import, a renamed function, a solution cell turned into markdown
    "02_import": ["import not_a_module_anyone_has", "def increment(n):\n    return n + 1", ("markdown", GREET),
                  PICK],
    "01_partial": ["import torch",
                   "def double(x):\n    return 2 * x",
                   "def scale(x, s):\n    return (x * s).double()",
                   "def answer():\n    # YOUR CODE HERE\n    raise NotImplementedError"],
}


def write_nb(path: Path, cells) -> Path:
    nb = nbformat.v4.new_notebook()
    for c in cells:
        kind, src = c if isinstance(c, tuple) else ("code", c)
        nb.cells.append(nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def fill_in(learner: Path, master: Path, out: Path) -> Path:
    """The learner copy with each stub replaced by the master's solution (the round trip)."""
    got, ref = nbformat.read(learner, as_version=4), nbformat.read(master, as_version=4)
    for g, r in zip(got.cells, ref.cells):
        if "raise NotImplementedError" in g.source:
            g.source = "\n".join(line for line in r.source.splitlines() if "### " not in line)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(got, out)
    return out


@pytest.fixture(scope="module")
def spec_registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec")
    (d / "ck_synthetic_spec.py").write_text(SPEC)
    sys.path.insert(0, str(d))
    try:
        yield load_registry(["ck_synthetic_spec"]), d
    finally:
        sys.path.remove(str(d))


@pytest.fixture(scope="module")
def batch(tmp_path_factory, spec_registry):
    registry, _ = spec_registry
    root = tmp_path_factory.mktemp("grading")
    subs = root / "subs"
    paths = [write_nb(subs / name / f"{name}.ipynb", cells) for name, cells in SUBMISSIONS.items()]
    (subs / "02_malformed").mkdir()
    (subs / "02_malformed" / "02_malformed.ipynb").write_text('{"cells": [ {"cell_type": "code", "sour')
    paths.append(subs / "02_malformed" / "02_malformed.ipynb")
    paths.append(write_nb(subs / "unnumbered" / "homework.ipynb", [INC]))
    # the round trip: master -> release -> fill in the solutions -> grade
    masters = root / "masters"
    write_nb(masters / "01_demo.ipynb", MASTER_01)
    rel.release(masters, root / "learner")
    paths.append(fill_in(root / "learner" / "01_demo.ipynb", masters / "01_demo.ipynb",
                         subs / "01_roundtrip" / "01_demo.ipynb"))
    out = root / "out"
    options = GradeOptions(timeout=90, memory_mb=1024, jobs=2, exercise_timeout=4)
    start = time.monotonic()
    results = grade_batch([subs], out, options, registry=registry, progress=False)
    elapsed = time.monotonic() - start
    by_name = {Path(r.path).parent.name: r for r in results}
    return {"results": by_name, "out": out, "subs": subs, "options": options, "registry": registry,
            "elapsed": elapsed, "root": root}


def points(r):
    return {k: e.points for k, e in r.exercises.items()}


def test_correct_submission_gets_full_marks_despite_megabytes_of_output(batch):
    r = batch["results"]["02_ok"]
    assert (r.status, r.total, r.max_total) == ("ok", 3, 3), r.to_json()
    assert r.details["output_truncated"] is True


def test_round_trip_release_fill_grade(batch):
    r = batch["results"]["01_roundtrip"]
    assert (r.status, r.total, r.max_total) == ("ok", 4, 4), r.to_json()


def test_partly_wrong(batch):
    r = batch["results"]["02_partial"]
    assert r.status == "ok" and points(r) == {"02.inc": 1, "02.greet": 0, "02.pick": 0}
    assert r.exercises["02.greet"].status == "failed"
    assert "'hello a'" in r.exercises["02.greet"].message and "'hi a'" in r.exercises["02.greet"].message
    assert r.exercises["02.pick"].status == "timeout"  # a function that never returns
    r = batch["results"]["01_partial"]
    assert points(r) == {"01.double": 1, "01.scale": 0, "01.answer": 0}
    assert "dtype is torch.float64, expected torch.float32" in r.exercises["01.scale"].message
    assert r.exercises["01.answer"].status == "not_done"


def test_forging_gains_nothing(batch):
    r = batch["results"]["02_forge"]
    assert r.total == 0 and r.status == "ok", r.to_json()
    ex = r.exercises
    assert ex["02.inc"].status == "failed" and "Liar" in ex["02.inc"].message
    assert ex["02.greet"].status == "error" and "no greeting today" in ex["02.greet"].message
    assert ex["02.pick"].status == "failed" and "dict" in ex["02.pick"].message


def test_memory_bomb_is_stopped_and_the_rest_still_graded(batch):
    r = batch["results"]["02_bomb"]
    assert r.status == "memory" and r.total == 3, r.to_json()


def test_exception_at_import_renamed_function_and_retyped_cell(batch):
    r = batch["results"]["02_import"]
    assert r.status == "error" and "ModuleNotFoundError" in r.status_message
    assert points(r) == {"02.inc": 0, "02.greet": 0, "02.pick": 1}
    assert r.exercises["02.inc"].status == r.exercises["02.greet"].status == "missing"
    assert "`inc`" in r.exercises["02.inc"].message


def test_invalid_files(batch):
    r = batch["results"]["02_malformed"]
    assert r.status == "invalid" and r.total == 0 and r.max_total == 3
    r = batch["results"]["unnumbered"]
    assert r.status == "invalid" and "NN_" in r.status_message


def test_reports(batch):
    out = batch["out"]
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == len(batch["results"])
    header = list(rows[0])
    assert header[0] == "submission" and header[-3:] == ["total", "max_total", "status"]
    assert {"01.double", "01.scale", "01.answer", "02.inc", "02.greet", "02.pick"} <= set(header)
    ok = next(row for row in rows if row["submission"].endswith("02_ok.ipynb"))
    assert (ok["02.inc"], ok["01.double"], ok["total"], ok["status"]) == ("1", "", "3", "ok")
    doc = json.loads((out / "grades.json").read_text())
    from coursekit.grading.isolation import bwrap_path, probe
    assert doc["isolation"]["isolated"] is probe(bwrap_path())[0]   # on wherever bubblewrap can run
    assert doc["exercises"]["01.scale"]["points"] == 2
    partial = next(s for s in doc["submissions"] if s["submission"].endswith("02_partial.ipynb"))
    assert partial["exercises"]["02.greet"]["points"] == 0 and partial["exercises"]["02.greet"]["message"]
    md = (out / partial["feedback"]).read_text()
    assert "## Passed" in md and "02.inc" in md and "expected: 'hi a' (str)" in md and "got:      'hello a'" in md
    md = (out / next(s for s in doc["submissions"] if s["submission"].endswith("01_partial.ipynb"))["feedback"]).read_text()
    assert "Hint: x times s." in md
    print(f"\nbatch of {len(batch['results'])} graded in {batch['elapsed']:.0f} s: " + ", ".join(
        f"{k} {r.details.get('seconds')}" for k, r in batch["results"].items()))


def test_a_rerun_does_not_regrade(batch):
    start = time.monotonic()
    again = grade_batch([batch["subs"]], batch["out"], batch["options"], registry=batch["registry"],
                        progress=False)
    assert all(r.reused for r in again) and time.monotonic() - start < 20
    assert {Path(r.path).parent.name: (r.total, r.status) for r in again} == \
        {k: (r.total, r.status) for k, r in batch["results"].items()}
    # a changed submission is graded again, the others are not
    changed = batch["subs"] / "02_partial" / "02_partial.ipynb"
    write_nb(changed, [INC, GREET, PICK])
    third = {Path(r.path).parent.name: r for r in grade_batch([batch["subs"]], batch["out"], batch["options"],
                                                             registry=batch["registry"], progress=False)}
    assert not third["02_partial"].reused and third["02_partial"].total == 3
    assert third["02_ok"].reused


def test_infinite_loop_times_out(tmp_path, spec_registry):
    registry, _ = spec_registry
    # the loop ignores the interrupt, so the kernel must be replaced and `inc` defined again
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    sub = write_nb(tmp_path / "02_loop.ipynb", [INC, loop, GREET])
    [r] = grade_batch([sub], tmp_path / "out", GradeOptions(timeout=10, exercise_timeout=10),
                      registry=registry, progress=False)
    assert r.status == "timeout" and points(r) == {"02.inc": 1, "02.greet": 0, "02.pick": 0}, r.to_json()
    assert r.details["kernel_deaths"] == 1 and r.exercises["02.greet"].status == "missing"


def test_transport_rejects_what_it_does_not_expect():
    import torch
    tree, tensors = transport.encode((torch.ones(2), 1, 2.5, "s", None, True, [float("nan")], object()))
    value = transport.decode(tree, tensors)
    assert value[1:6] == (1, 2.5, "s", None, True) and torch.equal(value[0], torch.ones(2))
    assert type(value[7]).__name__ == "object" and value[7] != value[7]
    for bad in ({"t": "int", "v": 3}, {"t": "tensor", "k": "t9"}, {"t": "str", "v": "x", "extra": 1},
                {"t": "pickle", "v": "gASV"}, {"t": "float", "v": "nope"}, ["t", "none"]):
        with pytest.raises(transport.TransportError):
            transport.decode(bad, tensors)


def test_transport_carries_dicts_in_order_and_rejects_bad_ones():
    import torch
    value = {"b": (1, 2), "a": {"x": torch.arange(3)}, 3: None, (1, "k"): [0.5]}
    tree, tensors = transport.encode(value)
    back = transport.decode(tree, tensors)
    assert list(back) == ["b", "a", 3, (1, "k")] and back["b"] == (1, 2) and back[(1, "k")] == [0.5]
    assert torch.equal(back["a"]["x"], torch.arange(3))
    one = {"t": "int", "v": "1"}
    for bad in ({"t": "dict", "v": [[one]]}, {"t": "dict", "v": [[one, one], [one, one]]},
                {"t": "dict", "v": [[{"t": "list", "v": []}, one]]}, {"t": "dict", "v": {"k": one}}):
        with pytest.raises(transport.TransportError):
            transport.decode(bad, {})


def _same(x, y):
    import torch
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return type(y) is dict and list(x) == list(y) and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return type(x) is type(y) and (x == y or x != x and y != y)


def test_every_exercise_hidden_cases_travel_to_the_kernel_intact():
    """What the harness calls the learner's function with is what `check()` calls it with: a case the
    transport could not carry (it used to turn dicts into opaque objects) would fail every learner."""
    from coursekit.exercises import list_exercises
    for ex in list_exercises():
        cases = [tuple(c) for c in ex.cases()]
        tree, tensors = transport.encode(cases)
        assert '"other"' not in json.dumps(tree), f"{ex.id}: a hidden case the transport cannot carry"
        assert _same(transport.decode(tree, tensors), cases), ex.id


def test_notebook_number():
    assert notebook_number("subs/alice/03_quantization_theory.ipynb") == "03"
    assert notebook_number("alice_07_build.ipynb") == "07"
    assert notebook_number("homework.ipynb") is None
    assert notebook_number("homework.ipynb", override="4") == "04"


def test_cli_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["grade", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert main(["grade", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no submissions" in capsys.readouterr().err
    sub = write_nb(tmp_path / "02_x.ipynb", [INC])
    (tmp_path / "a_file").write_text("")
    assert main(["grade", str(sub), "--out", str(tmp_path / "a_file")]) == 2
    assert "cannot use the output folder" in capsys.readouterr().err
    assert main(["grade", str(sub), "--out", str(tmp_path / "o"), "--jobs", "0"]) == 2
    assert main(["grade", str(sub), "--out", str(tmp_path / "o"), "--notebook", "three"]) == 2


def test_cli_grades(tmp_path, spec_registry, monkeypatch, capsys):
    """`coursekit grade` end to end, with the synthetic spec injected by --spec-module."""
    monkeypatch.chdir(tmp_path)
    sub = write_nb(tmp_path / "02_cli.ipynb", ["def inc(n):\n    return n + 2", GREET])
    assert main(["grade", "02_cli.ipynb", "--out", "o", "--spec-module", "ck_synthetic_spec",
                 "--timeout", "60"]) == 0
    assert "graded 1 submissions" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "o" / "grades.csv").open()))
    assert rows == [{"submission": "02_cli.ipynb", "02.greet": "1", "02.inc": "0", "02.pick": "0",
                     "total": "1", "max_total": "3", "status": "ok"}], (tmp_path / "o" / "grades.json").read_text()
    assert "expected: 2 (int)" in (tmp_path / "o" / "feedback" / "02_cli.md").read_text()
    assert sub.exists()


def test_console_script():
    import shutil
    import subprocess
    exe = shutil.which("coursekit", path=str(Path(sys.executable).parent))
    assert exe, "reinstall: pip install --no-deps -e ."
    proc = subprocess.run([exe, "grade", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--memory-mb" in proc.stdout


def test_result_files_are_checked_strictly(tmp_path, spec_registry):
    """What the learner's kernel writes is data: a wrong nonce, a stray tensor, an extra key or a
    case count that does not match makes the exercise score nothing."""
    from coursekit.grading.preparation import prepare
    from coursekit.grading.sandbox import HarnessState
    from coursekit.grading.scoring import score_exercise
    registry, _ = spec_registry
    prep = prepare(registry["01.scale"])
    nonce = "n" * 32
    stem = str(tmp_path / "r")

    def write(doc, tensors=None):
        from safetensors.torch import save_file
        Path(stem + ".json").write_text(json.dumps(doc))
        if tensors:
            save_file(tensors, stem + ".safetensors")

    import torch
    good = {"format": transport.FORMAT, "nonce": nonce, "exercise": "01.scale", "function": "ok",
            "function_type": "", "tensors": ["t0", "t1"], "forbidden": [],
            "cases": [{"r": "ok", "value": {"t": "tensor", "k": "t0"}}, {"r": "ok", "value": {"t": "tensor", "k": "t1"}}]}
    expected = {"t0": prep.expected[0], "t1": prep.expected[1]}
    write(good, expected)
    assert score_exercise(prep, stem, nonce, HarnessState.DONE).status == "passed"
    for bad in ({"nonce": "x" * 32}, {"exercise": "01.double"}, {"extra": 1}, {"tensors": ["t0"]},
                {"cases": good["cases"][:1]}, {"cases": [{"r": "ok", "value": {"t": "tensor", "k": "t0"}}] * 2},
                {"function": "passed"}, {"cases": [{"r": "passed"}] * 2},
                {"forbidden": ["coursekit.quant.quantize"]}, {"forbidden": "none"}):
        write({**good, **bad}, expected)
        r = score_exercise(prep, stem, nonce, HarnessState.DONE)
        assert r.status == "invalid" and r.points == 0, bad
    write(good, {**expected, "t2": torch.ones(1)})
    assert score_exercise(prep, stem, nonce, HarnessState.DONE).status == "invalid"
    Path(stem + ".json").write_text('{"format": NaN}')
    assert score_exercise(prep, stem, nonce, HarnessState.DONE).status == "invalid"


def test_progress_bar_only_on_a_terminal():
    import io
    from coursekit.grading.report import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(2, stream=stream)
        bar.update("ok")
        bar.update("timeout", reused=True)
        bar.close()
    assert "2/2" in tty.getvalue() and "timeout:1" in tty.getvalue() and pipe.getvalue() == ""
