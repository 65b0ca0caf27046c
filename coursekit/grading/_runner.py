"""Run one submission in a fresh kernel, under limits. A script, not a module of coursekit.

The grader starts this file with `python _runner.py`, gives it a job as JSON on stdin and reads
the report it writes to `job["report"]`. It imports nothing from coursekit, and it runs nothing
of the learner's itself: the learner's code runs only in the kernel it starts.

1. `set_limits`: its own resource limits first (address space, CPU time, file size, no core
   files); the kernel it launches inherits them.
2. `Run.learner_cells`: the submission's code cells in order, errors allowed, within one
   wall-time budget for the whole notebook. A `Watchdog` kills the kernel when its resident
   memory (kernel and its children) passes the limit. When the kernel dies, the cell that killed
   it is skipped and a fresh kernel re-runs the other cells (at most `max_attempts` kernels).
3. `Run.harness_cells`: the grader's harness cells, one per exercise, each with its own time
   limit. The harness writes the learner's results to files the grader reads; this script never
   looks at them. The report says, per exercise, {"state": "done" | "timeout" | "error" (with a
   "detail") | "memory" | "died" | "not_run"}.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config


# --------------------------------------------------------------------------- limits and processes
def set_limits(limits):
    for name, value in (("RLIMIT_AS", limits.get("as_bytes")), ("RLIMIT_CPU", limits.get("cpu_s")),
                        ("RLIMIT_FSIZE", limits.get("fsize_bytes")), ("RLIMIT_CORE", 0)):
        if value is None or not hasattr(resource, name):
            continue
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # CPU: the soft limit sends SIGXCPU (which kills), the hard one a few seconds later SIGKILL.
        new_hard = value + 5 if name == "RLIMIT_CPU" and hard == resource.RLIM_INFINITY else \
            (value if hard == resource.RLIM_INFINITY else hard)
        resource.setrlimit(which, (value, new_hard))


def _children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree_rss(pid):
    """Resident bytes of `pid` and its descendants."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(_children(p))
    return total


def kill_group(pid):
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (OSError, ProcessLookupError):
            pass


class Watchdog(threading.Thread):
    """Every 0.2 s: kill the kernel past the memory limit; if the grader is gone, take it down too."""

    def __init__(self, rss_limit, report):
        super().__init__(daemon=True)
        self.rss_limit, self.report = rss_limit, report
        self.pid = None          # the kernel being watched, if any
        self.stopped = False
        self.grader = os.getppid()

    def run(self):
        while not self.stopped:
            pid = self.pid
            if os.getppid() != self.grader:  # the grader was killed: leave no kernel behind
                if pid:
                    kill_group(pid)
                os._exit(3)
            if pid and self.rss_limit and tree_rss(pid) > self.rss_limit:
                self.report["memory_killed"] = True
                kill_group(pid)
            time.sleep(0.2)


# --------------------------------------------------------------------------- the kernel client
class OutputCap:
    """How much output the run may still store, across every kernel it starts."""

    def __init__(self, limit_bytes):
        self.limit, self.total, self.truncated = limit_bytes, 0, False


class CappedClient(NotebookClient):
    """nbclient with a cap on stored output and a flag raised on every timeout."""

    def __init__(self, nb, cap, **kw):
        super().__init__(nb, **kw)
        self.cap = cap
        self.timed_out = False

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        if out.get("output_type") == "error":
            out["traceback"] = []
            out["evalue"] = str(out.get("evalue", ""))[:2000]
            return out
        self.cap.total += len(json.dumps(out))
        if self.cap.total > self.cap.limit:
            if outs and outs[-1] is out:
                outs.pop()
            self.cap.truncated = True
            return None
        return out

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out = True
        return await super()._async_handle_timeout(timeout, cell)


def wrapped_manager(wrap):
    """A kernel manager that starts the kernel under `wrap` (bubblewrap's command line).

    Interrupts go as messages on the control channel: a signal to the process group would reach
    bubblewrap itself, not only the kernel inside its PID namespace.
    """
    from jupyter_client.manager import AsyncKernelManager

    class WrappedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            self.kernel_spec.interrupt_mode = "message"
            return list(wrap) + cmd

    return WrappedKernelManager


# --------------------------------------------------------------------------- one run
class Run:
    """The job, its report, and what earlier kernels learned (cells that killed them, timings)."""

    def __init__(self, job):
        self.job = job
        self.t0 = time.monotonic()
        self.report = {"timed_out": False, "memory_killed": False, "kernel_deaths": 0, "cell_errors": [],
                       "skipped_cells": [], "cells_run": 0, "output_truncated": False, "harness": {},
                       "runner_error": None, "timings": []}
        self.nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in job["cells"]])
        self.n_learner = len(self.nb.cells)
        self.harness = job.get("harness", [])
        self.deadline = self.t0 + float(job["timeout"])
        self.cap = OutputCap(int(job.get("output_limit_bytes", 2_000_000)))
        self.watchdog = Watchdog(job.get("rss_limit_bytes"), self.report)
        self.fatal = set()     # learner cells not to run again: they timed out or killed a kernel
        self.took = {}         # seconds each learner cell took the first time it ran
        self.done = set()      # exercises whose harness cell has run (or killed a kernel)
        self.where = None      # ("cell", index) or ("harness", exercise id): what is running

    def mark(self, what):
        self.report["timings"].append((what, round(time.monotonic() - self.t0, 2)))

    def attempt(self, number):
        """One kernel: the learner's cells, then the harness. True when the run is over."""
        client = self.client(number)
        self.where = None
        try:
            with client.setup_kernel(cwd=self.job["sandbox"], env=self.job.get("env") or dict(os.environ),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                self.mark("kernel up")
                self.watch(client)
                self.learner_cells(client)
                self.mark("cells done")
                self.harness_cells(client)
            self.mark("harness done")
            self.report["runner_error"] = None
            return True
        except DeadKernelError:
            self.kernel_died()
            return False
        except Exception as exc:  # the kernel could not start, or nbclient failed: report, don't hide
            self.report["runner_error"] = f"{type(exc).__name__}: {exc}"[:1000]
            if self.where is not None:
                return True
            time.sleep(1)  # a kernel that failed to start (a busy machine): try a fresh one
            return False
        finally:
            if self.watchdog.pid:
                kill_group(self.watchdog.pid)
            self.watchdog.pid = None
            try:
                client._cleanup_kernel()
            except Exception:
                pass

    def client(self, number):
        config = Config()
        config.KernelManager.transport = "ipc"  # unix sockets in the sandbox: no TCP ports to race for
        config.KernelManager.ip = os.path.join(self.job["sandbox"], f"kernel-{number}")
        wrap = self.job.get("kernel_wrap")
        extra = {"kernel_manager_class": wrapped_manager(wrap)} if wrap else {}
        return CappedClient(self.nb, self.cap, config=config, kernel_name="python3", allow_errors=True, **extra,
                            interrupt_on_timeout=True,
                            error_on_timeout={"ename": "Timeout", "evalue": "the cell ran out of time",
                                              "traceback": []},
                            startup_timeout=int(self.job.get("startup_timeout", 60)), iopub_timeout=2,
                            record_timing=False, shutdown_kernel="immediate",
                            resources={"metadata": {"path": self.job["sandbox"]}})

    def watch(self, client):
        """Hand the new kernel's pid to the watchdog, and to the grader (which kills it at the end)."""
        proc = getattr(getattr(client.km, "provisioner", None), "process", None)
        self.watchdog.pid = getattr(proc, "pid", None)
        if self.watchdog.pid and self.job.get("kernel_pid_file"):
            with open(self.job["kernel_pid_file"], "a") as f:
                f.write(f"{self.watchdog.pid}\n")

    def run_cell(self, client, cell, index, timeout):
        """Execute one cell; (whether it timed out, its error outputs)."""
        if index is None:  # a cell of the grader's: nbclient wants every cell inside the notebook
            self.nb.cells.append(cell)
            index = len(self.nb.cells) - 1
        client.timed_out = False
        client.timeout = max(1, int(timeout + 0.999))
        client.execute_cell(cell, index, store_history=False)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        cell.outputs = []  # not needed any more; keeps the runner's memory flat
        return client.timed_out, errors

    def still_answers(self, client):
        """After a timeout: does the kernel run a trivial cell? If not, it must be replaced."""
        timed_out, _ = self.run_cell(client, nbformat.v4.new_code_cell("pass"), None, 5)
        if timed_out:
            raise DeadKernelError("the kernel does not answer after a timeout")

    def learner_cells(self, client):
        del self.nb.cells[self.n_learner:]
        for i, cell in enumerate(self.nb.cells[:self.n_learner]):
            budget = self.budget(i)
            if budget is None:
                continue
            self.where = ("cell", i)
            started = time.monotonic()
            timed_out, errors = self.run_cell(client, cell, i, budget)
            if i not in self.took:
                self.took[i] = time.monotonic() - started
                self.report["cells_run"] += 1
                self.report["cell_errors"] += [{"cell": i, "ename": str(e.get("ename", ""))[:200],
                                                "evalue": str(e.get("evalue", ""))[:500]} for e in errors]
            if timed_out:
                self.report["timed_out"] = True
                self.fatal.add(i)
                self.still_answers(client)

    def budget(self, i):
        """Seconds learner cell `i` may take now, or None to skip it."""
        if i in self.fatal:
            return None
        if i in self.took:  # ran before the last kernel died: run again, on its own budget
            return 2 * self.took[i] + 5
        if self.report["timed_out"]:
            return None
        budget = self.deadline - time.monotonic()
        if budget <= 0:
            self.report["timed_out"] = True
            return None
        return budget

    def harness_cells(self, client):
        for h in self.harness:
            if h["id"] in self.done:
                continue
            self.where = ("harness", h["id"])
            timed_out, errors = self.run_cell(client, nbformat.v4.new_code_cell(h["code"]), None,
                                              float(h["timeout"]))
            self.done.add(h["id"])
            if timed_out:
                self.report["harness"][h["id"]] = {"state": "timeout"}
                self.still_answers(client)
            elif errors:
                e = errors[0]
                detail = f"{e.get('ename')}: {str(e.get('evalue'))[:300]}"
                self.report["harness"][h["id"]] = {"state": "error", "detail": detail}
            else:
                self.report["harness"][h["id"]] = {"state": "done"}

    def kernel_died(self):
        """Remember what killed the kernel, so that the next one skips it."""
        self.report["kernel_deaths"] += 1
        if self.where and self.where[0] == "cell":
            self.fatal.add(self.where[1])
            self.report["skipped_cells"].append(self.where[1])
        elif self.where:
            self.done.add(self.where[1])
            state = "memory" if self.report["memory_killed"] else "died"
            self.report["harness"].setdefault(self.where[1], {"state": state})

    def finish(self):
        self.watchdog.stopped = True
        self.mark("end")
        self.report["output_truncated"] = self.cap.truncated
        for h in self.harness:
            self.report["harness"].setdefault(h["id"], {"state": "not_run"})
        tmp = self.job["report"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.report, f)
        os.replace(tmp, self.job["report"])


def main():
    job = json.loads(sys.stdin.read())
    set_limits(job.get("limits", {}))
    run = Run(job)
    run.watchdog.start()
    for number in range(int(job.get("max_attempts", 3))):
        if run.attempt(number):
            break
    run.finish()


if __name__ == "__main__":
    main()
