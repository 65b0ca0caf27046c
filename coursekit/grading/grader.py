"""Grade learners' notebooks: run each in a sandboxed kernel, score in the grader's own process.

How one submission is graded
----------------------------
1. Which exercises: the notebook number NN, from the file name (`03_quantization_theory.ipynb`,
   `alice_03_quantization_theory.ipynb`: the first two digits followed by `_`), or `notebook=` for
   the whole batch. The exercises are the spec's (`coursekit/exercises/nbNN_*.py`), not what the
   submission's own cells mention: deleting a `check(...)` cell does not remove an exercise.
2. The grader builds each exercise's hidden cases and the reference results in ITS process.
3. A child process (`_runner.py`) with resource limits starts a fresh kernel in a fresh temporary
   folder (also HOME and TMPDIR), runs the submission's code cells (errors allowed), then one
   harness cell per exercise: it loads the cases (safetensors + JSON), calls the learner's
   function by name, and writes what it returned in the same format, under a random nonce.
4. The grader reads those files strictly (`transport.decode`) and compares each result with the
   reference using `coursekit.exercises.spec.compare`. Nothing the kernel prints, and nothing
   `check` says there, counts.

Statuses: ok, timeout, memory, error (a cell raised or the kernel died), invalid (not a readable
notebook, or no exercise for it). A submission gets points for every exercise that could be
graded whatever its status: when a cell kills the kernel (memory) or hangs it past an interrupt,
a fresh kernel re-runs the other cells, so the functions defined elsewhere are still graded.
An exercise is worth its points when every hidden case matches, nothing otherwise (like `check`).

Limits (GradeOptions; CLI flags in brackets)
--------------------------------------------
* wall time [--timeout, default 600 s] for all of the notebook's cells together; after it, the
  running cell is interrupted and later cells are skipped. Each exercise's hidden cases then get
  [--exercise-timeout, default 30 s]. A hard kill of the whole run is the backstop.
* memory [--memory-mb, default 4096]: resident memory of the kernel and its children, watched
  every 0.2 s (the kernel is killed past it), plus RLIMIT_AS = memory + AS_HEADROOM_MB (4 GB) so
  one huge allocation fails at once. torch reserves far more address space than it uses, so
  RLIMIT_AS alone at the memory limit would break `import torch`.
* RLIMIT_CPU (2 x the hard wall time: a backstop for a runaway kernel), RLIMIT_FSIZE (256 MB per
  file), no core files, at most 2 MB of stored output (the rest is dropped).
* HOME, TMPDIR and the working directory are a fresh temporary folder, removed afterwards; the
  kernel talks over unix sockets in it; OMP/MKL threads = cores // jobs so jobs don't compete.

What this does not do: the kernel runs as the grader's user, so it is not a security boundary
against a determined attacker (it could read other files or call the reference solutions, which
ship with coursekit). Run cohorts you don't trust inside a container or as a separate user.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..exercises.spec import Exercise, clone_args, compare, describe
from . import transport

GRADER_VERSION = "1"
RUNNER = Path(__file__).with_name("_runner.py")
TRANSPORT_SOURCE = Path(transport.__file__).read_text(encoding="utf-8")
HARNESS_FILE = "<coursekit-grader>"

#: RLIMIT_AS = memory_mb + this. A kernel that has imported torch, safetensors and matplotlib
#: reserves ~1.5 GB of address space it never touches (measured: VmPeak 1.5 GB, RSS 350 MB), and
#: thread stacks and malloc arenas add more on machines with many cores. The address-space limit
#: is the backstop that makes one huge allocation fail at once; the resident-memory watcher
#: enforces `memory_mb` itself.
AS_HEADROOM_MB = 4096
_MEMORY_WORDS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "not enough memory",
                 "out of memory", "bad_alloc", "OutOfMemory")
_NOTEBOOK_NUMBER = re.compile(r"(?<![0-9])([0-9]{2})_")
STATUSES = ("ok", "timeout", "memory", "error", "invalid")


@dataclass
class GradeOptions:
    """Limits per submission. `timeout` is the wall time for running all of the notebook's cells;
    each exercise's hidden cases then get `exercise_timeout` more."""
    timeout: float = 600.0
    memory_mb: int = 4096
    jobs: int = 1
    exercise_timeout: float = 30.0
    file_mb: int = 256
    output_kb: int = 2000
    notebook: str | None = None
    startup_timeout: float = 60.0
    threads: int | None = None  # torch/OMP threads per kernel; default: the cores shared among jobs


@dataclass
class ExerciseResult:
    id: str
    points: float
    max_points: float
    status: str  # passed, failed, not_done, error, missing, timeout, not_run, invalid
    message: str
    cases_passed: int = 0
    cases: int = 0
    hint: str = ""
    title: str = ""


@dataclass
class SubmissionResult:
    submission: str
    path: str
    sha256: str
    notebook: str | None
    status: str
    status_message: str
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    fingerprint: str = ""
    reused: bool = False

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises.values())

    @property
    def max_total(self) -> float:
        return sum(e.max_points for e in self.exercises.values())

    def to_json(self) -> dict:
        return {"grader": GRADER_VERSION, "submission": self.submission, "path": self.path,
                "sha256": self.sha256, "fingerprint": self.fingerprint, "notebook": self.notebook,
                "status": self.status, "status_message": self.status_message,
                "total": self.total, "max_total": self.max_total,
                "exercises": {k: vars(v) for k, v in self.exercises.items()}, "details": self.details}

    @classmethod
    def from_json(cls, doc: dict) -> "SubmissionResult":
        return cls(submission=doc["submission"], path=doc["path"], sha256=doc["sha256"],
                   notebook=doc["notebook"], status=doc["status"], status_message=doc["status_message"],
                   exercises={k: ExerciseResult(**v) for k, v in doc["exercises"].items()},
                   details=doc.get("details", {}), fingerprint=doc["fingerprint"])


# --------------------------------------------------------------------------- the exercises
def load_registry(spec_modules: list[str] | None = None) -> dict[str, Exercise]:
    """Exercises by id: the course's own, or those of the given modules (each with `EXERCISES`)."""
    if not spec_modules:
        from ..exercises import list_exercises
        return {e.id: e for e in list_exercises()}
    found: dict[str, Exercise] = {}
    for name in spec_modules:
        module = importlib.import_module(name)
        for ex in module.EXERCISES:
            if ex.id in found:
                raise ValueError(f"duplicate exercise id {ex.id!r} in {name}")
            found[ex.id] = ex
    return found


def notebook_number(path: str | Path, override: str | None = None) -> str | None:
    if override:
        return f"{int(override):02d}"
    m = _NOTEBOOK_NUMBER.search(Path(path).name)
    return m.group(1) if m else None


@dataclass
class Prepared:
    """An exercise with its hidden cases and reference results, built once per batch."""
    ex: Exercise
    cases: list
    expected: list
    cases_json: bytes
    cases_tensors: bytes | None
    fingerprint: str


def prepare(ex: Exercise) -> Prepared:
    from safetensors.torch import save as st_save
    cases = [tuple(c) for c in ex.cases()]
    expected = [ex.reference(*clone_args(c)) for c in cases]
    tree, tensors = transport.encode([tuple(c) for c in cases])
    doc = {"format": transport.FORMAT, "value": tree, "tensors": sorted(tensors)}
    cases_json = json.dumps(doc, sort_keys=True, allow_nan=False).encode()
    cases_tensors = st_save(tensors) if tensors else None
    h = hashlib.sha256(cases_json)
    h.update(cases_tensors or b"")
    exp_tree, exp_tensors = transport.encode(expected)
    h.update(json.dumps(exp_tree, sort_keys=True).encode())
    if exp_tensors:
        h.update(st_save(exp_tensors))
    h.update(repr((ex.id, ex.name, ex.points, ex.atol, ex.rtol, ex.check_dtype)).encode())
    return Prepared(ex, cases, expected, cases_json, cases_tensors, h.hexdigest()[:16])


# --------------------------------------------------------------------------- one submission
def _label(path: Path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path.resolve())


def _key(label: str) -> str:
    stem = label[:-6] if label.endswith(".ipynb") else label
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("_.") or "submission"


MAX_NOTEBOOK_BYTES = 100 * 2**20


def _code_cells(raw: bytes) -> list[str]:
    """The code cells of a notebook, read leniently (any nbformat 4 shape); raise on non-notebooks."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"it is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise ValueError("it is not a Jupyter notebook (no list of cells)")
    cells = []
    for cell in doc["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(s for s in src if isinstance(s, str))
        if isinstance(src, str) and src.strip():
            cells.append(src)
    return cells


def _harness_code(prep: Prepared, nonce: str, cases_stem: str, out_stem: str) -> str:
    args = dict(name=prep.ex.name, is_value=prep.ex.is_value, cases_stem=cases_stem, out_stem=out_stem,
                nonce=nonce, exercise=prep.ex.id, harness_file=HARNESS_FILE)
    fn = f"_coursekit_grade_{nonce[:12]}"
    return (f"def {fn}(_src={TRANSPORT_SOURCE!r}, _args={args!r}):\n"
            f"    _ns = {{'__name__': '_coursekit_transport'}}\n"
            f"    exec(compile(_src, {HARNESS_FILE!r}, 'exec'), _ns)\n"
            f"    _ns['run_exercise'](globals(), **_args)\n"
            f"try:\n    {fn}()\nfinally:\n    del {fn}\n")


def _kernel_env(sandbox: Path, options: GradeOptions) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER_", "IPYTHON"))}
    home = os.path.expanduser("~")
    env.setdefault("HF_HOME", os.path.join(home, ".cache", "huggingface"))  # read the course's cache
    (sandbox / "tmp").mkdir(exist_ok=True)
    threads = options.threads or max(1, (os.cpu_count() or 1) // max(1, int(options.jobs)))
    env.update(HOME=str(sandbox), TMPDIR=str(sandbox / "tmp"), MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    return env


class _Active:
    """Runner processes in flight, so an interrupted batch leaves nothing running."""
    lock = threading.Lock()
    procs: dict[int, tuple[subprocess.Popen, Path]] = {}

    @classmethod
    def kill_all(cls):
        with cls.lock:
            for proc, pidfile in list(cls.procs.values()):
                _kill_run(proc, pidfile)


def _kill_run(proc: subprocess.Popen, pidfile: Path):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        pids = [int(x) for x in pidfile.read_text().split()] if pidfile.exists() else []
    except (OSError, ValueError):
        pids = []
    for pid in pids:  # each kernel leads its own session: kill its whole group
        for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                kill()
            except OSError:
                pass


def _run(cells: list[str], preps: list[Prepared], options: GradeOptions, work: Path, sandbox: Path,
         nonce: str) -> tuple[dict, bool, str]:
    """Run the runner; return (its report or {}, whether it was killed for time, its log tail)."""
    harness = []
    for i, prep in enumerate(preps):
        cases_stem = str(work / f"{nonce}-c{i}")
        Path(cases_stem + ".json").write_bytes(prep.cases_json)
        if prep.cases_tensors is not None:
            Path(cases_stem + ".safetensors").write_bytes(prep.cases_tensors)
        harness.append({"id": prep.ex.id, "timeout": options.exercise_timeout,
                        "code": _harness_code(prep, nonce, cases_stem, str(work / f"{nonce}-r{i}"))})
    attempts = 3
    # The runner keeps to its own budgets; this is the backstop for a runner that cannot. Cells that
    # ran before a kernel died are re-run on a budget of twice their time, hence the 5 x timeout.
    hard = (options.startup_timeout * attempts + 5 * options.timeout
            + len(preps) * (options.exercise_timeout + 10) + 30)
    job = {"cells": cells, "sandbox": str(sandbox), "report": str(work / f"{nonce}-report.json"),
           "kernel_pid_file": str(work / f"{nonce}-kernels"), "timeout": options.timeout,
           "startup_timeout": options.startup_timeout, "harness": harness, "max_attempts": attempts,
           "limits": {"as_bytes": (options.memory_mb + AS_HEADROOM_MB) * 2**20,
                      "cpu_s": int(2 * hard) + 10, "fsize_bytes": options.file_mb * 2**20},
           "rss_limit_bytes": options.memory_mb * 2**20, "output_limit_bytes": options.output_kb * 1000,
           "env": _kernel_env(sandbox, options)}
    log = work / f"{nonce}-runner.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, str(RUNNER)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=logf, cwd=sandbox, env=job["env"],
                                start_new_session=True)
        pidfile = Path(job["kernel_pid_file"])
        with _Active.lock:
            _Active.procs[proc.pid] = (proc, pidfile)
        killed = False
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=hard)
            except subprocess.TimeoutExpired:
                killed = True
        finally:
            _kill_run(proc, pidfile)
            proc.wait()
            with _Active.lock:
                _Active.procs.pop(proc.pid, None)
    try:
        report = transport.load_json(job["report"], max_bytes=5_000_000)
    except (OSError, transport.TransportError):
        report = {}
    try:
        tail = log.read_bytes()[-2000:].decode("utf-8", "replace")
    except OSError:
        tail = ""
    return report, killed, tail


def _read_result(prep: Prepared, stem: str, nonce: str) -> dict:
    """The harness's result file for one exercise, checked strictly; raises TransportError."""
    doc = transport.load_json(stem + ".json")
    keys = {"format", "nonce", "exercise", "function", "function_type", "cases", "tensors"}
    if set(doc) != keys or doc["format"] != transport.FORMAT or doc["nonce"] != nonce \
            or doc["exercise"] != prep.ex.id:
        raise transport.TransportError("the result file does not belong to this run")
    if doc["function"] not in ("ok", "missing", "not_callable") or not isinstance(doc["function_type"], str):
        raise transport.TransportError("bad function field")
    tkeys = doc["tensors"]
    if not isinstance(tkeys, list) or not all(isinstance(k, str) for k in tkeys) or len(set(tkeys)) != len(tkeys):
        raise transport.TransportError("bad tensor list")
    if not tkeys and os.path.exists(stem + ".safetensors"):
        raise transport.TransportError("unexpected tensor file")
    tensors = transport.load_tensors(stem + ".safetensors", tkeys)
    cases = doc["cases"]
    n = len(prep.cases) if doc["function"] == "ok" else 0
    if not isinstance(cases, list) or len(cases) != n:
        raise transport.TransportError(f"expected {n} case results, found "
                                       f"{len(cases) if isinstance(cases, list) else 'none'}")
    used: set = set()
    out = []
    for c in cases:
        if not isinstance(c, dict):
            raise transport.TransportError("bad case result")
        r = c.get("r")
        shape = {"ok": {"r", "value"}, "not_implemented": {"r"}, "raised": {"r", "type", "message", "where"}}
        if r not in shape or set(c) != shape[r]:
            raise transport.TransportError("bad case result")
        if r == "ok":
            out.append({"r": "ok", "value": transport.decode(c["value"], tensors, used=used)})
        elif r == "raised":
            if not all(isinstance(c[k], str) and len(c[k]) <= 1000 for k in ("type", "message", "where")):
                raise transport.TransportError("bad case result")
            out.append(dict(c))
        else:
            out.append({"r": r})
    if used != set(tkeys):
        raise transport.TransportError("tensors in the file that no result uses")
    return {"function": doc["function"], "function_type": doc["function_type"], "cases": out}


def _score(prep: Prepared, stem: str, nonce: str, harness_state: str) -> ExerciseResult:
    ex = prep.ex
    head = ex.id + (f" ({ex.title})" if ex.title else "")

    def res(status, message, points=0.0, passed=0):
        return ExerciseResult(ex.id, points, float(ex.points), status, message, passed, len(prep.cases),
                              ex.hint, ex.title)

    if not os.path.exists(stem + ".json"):
        if harness_state == "timeout":
            return res("timeout", f"{head}: your function ran out of time on the hidden cases.")
        if harness_state in ("memory", "died"):
            return res("error", f"{head}: the kernel died while running your function on the hidden cases"
                                + (" (out of memory)." if harness_state == "memory" else "."))
        if harness_state.startswith("error"):
            return res("error", f"{head}: the hidden cases could not be run ({harness_state[7:]}).")
        return res("not_run", f"{head}: not graded: the notebook did not get as far as the hidden cases.")
    try:
        found = _read_result(prep, stem, nonce)
    except (transport.TransportError, OSError, KeyError, TypeError, ValueError) as exc:
        return res("invalid", f"{head}: the results could not be read ({str(exc)[:200]}); no points.")
    if found["function"] == "missing":
        return res("missing", f"{head}: there is no function `{ex.name}` in your notebook. Keep the name "
                              f"`{ex.name}` and keep its cell a code cell.")
    if found["function"] == "not_callable":
        return res("missing", f"{head}: `{ex.name}` is a {found['function_type']}, not a function.")
    passed = 0
    first = None
    for i, (case, expected, got) in enumerate(zip(prep.cases, prep.expected, found["cases"]), start=1):
        where = f"hidden case {i} of {len(prep.cases)}"
        inputs = f"inputs {describe(list(case))}" if case else "no inputs"
        if got["r"] == "not_implemented":
            if first is None:
                first = ("not_done", f"{head}: not done yet: replace `raise NotImplementedError` with your code.")
            continue
        if got["r"] == "raised":
            if first is None:
                line = f" ({got['where']})" if got["where"] else ""
                first = ("error", f"{head}: your code raised {got['type']}: {got['message']}{line} on "
                                  f"{where}; {inputs}.")
            continue
        value = got["value"]
        try:
            problem = compare(value, expected, ex)
        except Exception:
            problem = "could not compare your result with the expected one"
        if problem is None:
            passed += 1
        elif first is None:
            first = ("failed", f"{head}: failed on {where} ({inputs}): {problem}.\n"
                               f"  expected: {describe(expected)}\n  got:      {describe(value)}")
    if first is None:
        return res("passed", f"{head}: passed on {len(prep.cases)} hidden case"
                             f"{'s' if len(prep.cases) != 1 else ''}.", float(ex.points), passed)
    return res(first[0], first[1], 0.0, passed)


def _status(report: dict, killed: bool, log_tail: str) -> tuple[str, str]:
    errors = report.get("cell_errors") or []
    harness = report.get("harness") or {}
    mem_words = lambda e: any(w in f"{e.get('ename')} {e.get('evalue')}" for w in _MEMORY_WORDS)  # noqa: E731
    if killed:
        return "timeout", "the submission ran out of time and was stopped."
    if not report:
        return "error", f"the grader's runner failed: {log_tail[-300:].strip() or 'no report'}"
    if report.get("timed_out"):
        return "timeout", "a cell ran out of time; the cells after it were not run."
    if report.get("memory_killed") or any(mem_words(e) for e in errors) \
            or any(v == "memory" for v in harness.values()):
        return "memory", "the notebook used more memory than allowed."
    if report.get("runner_error"):
        return "error", f"the notebook could not be run: {report['runner_error'][:300]}"
    if report.get("kernel_deaths"):
        return "error", "the kernel died; the cell that killed it was skipped."
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return "error", f"cell {e.get('cell')} raised {e.get('ename')}: {str(e.get('evalue'))[:200]}{more}."
    return "ok", "the notebook ran to the end."


def grade_submission(path: str | Path, preps: list[Prepared], options: GradeOptions, label: str,
                     sha256: str, raw: bytes, number: str | None, fingerprint: str) -> SubmissionResult:
    result = SubmissionResult(label, str(path), sha256, number, "ok", "", fingerprint=fingerprint)
    try:
        cells = _code_cells(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        result.status, result.status_message = "invalid", f"not a readable notebook: {str(exc)[:200]}"
        for p in preps:
            result.exercises[p.ex.id] = ExerciseResult(p.ex.id, 0.0, float(p.ex.points), "not_run",
                                                       f"{p.ex.id}: not graded: the notebook could not be read.",
                                                       0, len(p.cases), p.ex.hint, p.ex.title)
        return result
    work = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
    sandbox = Path(tempfile.mkdtemp(prefix="coursekit-sandbox-"))
    nonce = secrets.token_hex(16)
    started = time.monotonic()
    try:
        report, killed, tail = _run(cells, preps, options, work, sandbox, nonce)
        harness = report.get("harness") if isinstance(report.get("harness"), dict) else {}
        for i, p in enumerate(preps):
            state = harness.get(p.ex.id, "not_run")
            result.exercises[p.ex.id] = _score(p, str(work / f"{nonce}-r{i}"), nonce,
                                               state if isinstance(state, str) else "not_run")
        result.status, result.status_message = _status(report, killed, tail)
        result.details = {k: report.get(k) for k in ("cells_run", "cell_errors", "skipped_cells",
                                                       "kernel_deaths", "output_truncated", "timings")}
        result.details["seconds"] = round(time.monotonic() - started, 1)
        if isinstance(result.details.get("cell_errors"), list):
            result.details["cell_errors"] = result.details["cell_errors"][:10]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sandbox, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- a batch
class UsageError(Exception):
    """A mistake in how the grader was called (no submissions, unusable output folder...)."""


def find_submissions(paths: list[str | Path]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts))
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    seen, unique = set(), []
    for p in found:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    if not unique:
        raise UsageError("no submissions to grade (no .ipynb files found)")
    return unique


def _prepare_out(out: Path):
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results").mkdir(exist_ok=True)
        (out / "feedback").mkdir(exist_ok=True)
        probe = out / "results" / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        list(out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot use the output folder {out}: {exc.strerror or exc}") from None


def grade_batch(paths: list[str | Path], out: str | Path, options: GradeOptions | None = None,
                registry: Mapping[str, Exercise] | None = None,
                progress: bool | None = None) -> list[SubmissionResult]:
    """Grade every submission; write DIR/grades.csv, DIR/grades.json, DIR/feedback/*.md.

    `registry` (exercise id -> Exercise) defaults to the course's specs. Submissions whose
    bytes and grading setup match a result already in DIR/results are not graded again.
    """
    from .report import write_reports, Progress
    options = options or GradeOptions()
    out = Path(out)
    subs = find_submissions(paths)
    _prepare_out(out)
    registry = dict(registry) if registry is not None else load_registry()

    labels = [_label(p) for p in subs]
    keys = [_key(lbl) for lbl in labels]
    for i, k in enumerate(keys):  # two labels that sanitize alike: tell them apart
        if keys.count(k) > 1:
            keys[i] = f"{k}-{hashlib.sha1(labels[i].encode()).hexdigest()[:6]}"

    numbers = [notebook_number(p, options.notebook) for p in subs]
    prepared: dict[str, Prepared] = {}
    for ex_id in registry:  # the spec's order, which is the notebook's
        if registry[ex_id].notebook in set(numbers):
            prepared[ex_id] = prepare(registry[ex_id])
    opts_fp = repr((GRADER_VERSION, options.timeout, options.memory_mb, options.exercise_timeout,
                    options.file_mb, options.output_kb))

    results: list[SubmissionResult | None] = [None] * len(subs)
    bar = Progress(len(subs), enabled=progress)
    todo = []
    for i, p in enumerate(subs):
        try:
            raw = p.read_bytes()
        except OSError as exc:
            results[i] = SubmissionResult(labels[i], str(p), "", numbers[i], "invalid",
                                          f"the file could not be read: {exc.strerror or exc}")
            bar.update("invalid")
            continue
        sha = hashlib.sha256(raw).hexdigest()
        preps = [prepared[e] for e in prepared if registry[e].notebook == numbers[i]]
        fp = hashlib.sha256((opts_fp + repr([q.fingerprint for q in preps])).encode()).hexdigest()[:16]
        old = _load_previous(out / "results" / f"{keys[i]}.json", sha, fp)
        if old is not None:
            old.submission, old.path, old.reused = labels[i], str(p), True
            results[i] = old
            bar.update(old.status, reused=True)
            continue
        if numbers[i] is None or not preps:
            why = ("its file name does not start with the notebook number (NN_...)" if numbers[i] is None
                   else f"there are no exercises for notebook {numbers[i]}")
            r = SubmissionResult(labels[i], str(p), sha, numbers[i], "invalid",
                                 f"cannot tell which exercises to grade: {why}.", fingerprint=fp)
            _save(out, keys[i], r)
            results[i] = r
            bar.update(r.status)
            continue
        todo.append((i, p, preps, sha, raw, fp))

    def work(item):
        i, p, preps, sha, raw, fp = item
        try:
            r = grade_submission(p, preps, options, labels[i], sha, raw, numbers[i], fp)
        except Exception as exc:  # a bug of ours: report it on this row, keep the batch going
            r = SubmissionResult(labels[i], str(p), sha, numbers[i], "error",
                                 f"the grader failed on this submission: {type(exc).__name__}: {exc}",
                                 fingerprint="")
            return i, r
        _save(out, keys[i], r)
        return i, r

    pool = ThreadPoolExecutor(max_workers=max(1, int(options.jobs)))
    try:
        futures = [pool.submit(work, item) for item in todo]
        for f in as_completed(futures):
            i, r = f.result()
            results[i] = r
            bar.update(r.status)
    except BaseException:  # Ctrl-C: stop the runs in flight now (finished results are kept)
        pool.shutdown(wait=False, cancel_futures=True)
        _Active.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    done = [(k, r) for k, r in zip(keys, results) if r is not None]
    write_reports(out, done, registry)
    return [r for _, r in done]


def _load_previous(path: Path, sha: str, fp: str) -> SubmissionResult | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("grader") == GRADER_VERSION and doc.get("sha256") == sha and doc.get("fingerprint") == fp:
            return SubmissionResult.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _save(out: Path, key: str, r: SubmissionResult):
    path = out / "results" / f"{key}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(r.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
