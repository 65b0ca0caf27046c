"""The sandboxed process that runs one submission: `_runner.py` under limits, in a throwaway folder.

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

Isolation (`isolation`): with bubblewrap the kernel is started inside its own namespaces, with
a read-only system, no network, only its own folder writable and nothing of the other
submissions, the output folder or the instructor's files in view. Without it, the kernel runs as
the grader's user (not a security boundary), and every report says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from . import transport
from .options import GradeOptions

RUNNER = Path(__file__).with_name("_runner.py")

#: RLIMIT_AS = memory_mb + this. A kernel that has imported torch, safetensors and matplotlib
#: reserves ~1.5 GB of address space it never touches (measured: VmPeak 1.5 GB, RSS 350 MB), and
#: thread stacks and malloc arenas add more on machines with many cores. The address-space limit
#: is the backstop that makes one huge allocation fail at once; the resident-memory watcher
#: enforces `memory_mb` itself.
AS_HEADROOM_MB = 4096
KERNEL_ATTEMPTS = 3   # a kernel that dies is replaced, at most this many kernels per submission


class HarnessState(StrEnum):
    """How the runner says one exercise's harness cell went (it writes these strings)."""
    DONE = "done"
    TIMEOUT = "timeout"
    ERROR = "error"        # the harness cell raised; the runner adds a `detail`
    MEMORY = "memory"      # the kernel was killed for memory while it ran
    DIED = "died"          # the kernel died while it ran
    NOT_RUN = "not_run"


@dataclass
class RunReport:
    """What the runner reported (its JSON, {} when it wrote none), and how the run ended."""
    report: dict
    killed: bool           # stopped by the hard wall-time backstop
    log_tail: str

    def harness(self, exercise_id: str) -> tuple[HarnessState, str]:
        """The state of one exercise's harness cell, and its detail (for ERROR)."""
        states = self.report.get("harness")
        entry = states.get(exercise_id) if isinstance(states, dict) else None
        if not isinstance(entry, dict):
            return HarnessState.NOT_RUN, ""
        try:
            return HarnessState(entry.get("state")), str(entry.get("detail", ""))
        except ValueError:
            return HarnessState.NOT_RUN, ""


def kernel_env(sandbox: Path, options: GradeOptions) -> dict:
    """The kernel's environment: ours, minus Jupyter's, with HOME and TMPDIR in the sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER_", "IPYTHON"))}
    home = os.path.expanduser("~")
    env.setdefault("HF_HOME", os.path.join(home, ".cache", "huggingface"))  # read the course's cache
    from ..models.smollm2 import CACHE_ENV, cache_root   # and coursekit's own: SmolLM2, converted once
    env.setdefault(CACHE_ENV, str(cache_root()))
    (sandbox / "tmp").mkdir(exist_ok=True)
    threads = options.threads or max(1, (os.cpu_count() or 1) // max(1, int(options.jobs)))
    env.update(HOME=str(sandbox), TMPDIR=str(sandbox / "tmp"), MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    return env


class InFlight:
    """Runner processes in flight, so an interrupted batch leaves nothing running."""
    lock = threading.Lock()
    procs: dict[int, tuple[subprocess.Popen, Path]] = {}

    @classmethod
    def kill_all(cls):
        with cls.lock:
            for proc, pidfile in list(cls.procs.values()):
                kill_run(proc, pidfile)


def kill_run(proc: subprocess.Popen, pidfile: Path):
    """Kill the runner's process group and every kernel it recorded in `pidfile`."""
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


def hard_timeout(options: GradeOptions, n_exercises: int) -> float:
    """The backstop for a runner that cannot keep to its own budgets. Cells that ran before a
    kernel died are re-run on a budget of twice their time, hence the 5 x timeout."""
    return (options.startup_timeout * KERNEL_ATTEMPTS + 5 * options.timeout
            + n_exercises * (options.exercise_timeout + 10) + 30)


def run(cells: list[str], harness: list[dict], options: GradeOptions, work: Path, sandbox: Path,
        nonce: str, kernel_wrap: list[str] | None = None) -> RunReport:
    """Run the runner on the learner's `cells`, then the `harness` cells ({id, timeout, code}).
    `kernel_wrap`, when given, is the command line the kernel is started under (bubblewrap)."""
    hard = hard_timeout(options, len(harness))
    job = {"cells": cells, "sandbox": str(sandbox), "report": str(work / f"{nonce}-report.json"),
           "kernel_pid_file": str(work / f"{nonce}-kernels"), "timeout": options.timeout,
           "startup_timeout": options.startup_timeout, "harness": harness, "max_attempts": KERNEL_ATTEMPTS,
           "limits": {"as_bytes": (options.memory_mb + AS_HEADROOM_MB) * 2**20,
                      "cpu_s": int(2 * hard) + 10, "fsize_bytes": options.file_mb * 2**20},
           "rss_limit_bytes": options.memory_mb * 2**20, "output_limit_bytes": options.output_kb * 1000,
           "env": kernel_env(sandbox, options), "kernel_wrap": kernel_wrap}
    log = work / f"{nonce}-runner.log"
    killed = _run_runner(job, hard, sandbox, log)
    try:
        report = transport.load_json(job["report"], max_bytes=5_000_000)
    except (OSError, transport.TransportError):
        report = {}
    try:
        tail = log.read_bytes()[-2000:].decode("utf-8", "replace")
    except OSError:
        tail = ""
    return RunReport(report, killed, tail)


def _run_runner(job: dict, hard: float, sandbox: Path, log: Path) -> bool:
    """Start the runner with `job` on stdin and wait; True when the backstop had to kill it."""
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, str(RUNNER)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=logf, cwd=sandbox, env=job["env"],
                                start_new_session=True)
        pidfile = Path(job["kernel_pid_file"])
        with InFlight.lock:
            InFlight.procs[proc.pid] = (proc, pidfile)
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=hard)
                return False
            except subprocess.TimeoutExpired:
                return True
        finally:
            kill_run(proc, pidfile)
            proc.wait()
            with InFlight.lock:
                InFlight.procs.pop(proc.pid, None)
