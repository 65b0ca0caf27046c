"""Run one submission in a fresh kernel, under limits. A script, not a module of coursekit.

The grader starts this file with `python _runner.py`, gives it a job as JSON on stdin and reads
the report it writes to `job["report"]`. It imports nothing from coursekit, and it runs nothing
of the learner's itself: the learner's code runs only in the kernel it starts.

1. It sets its own resource limits first (address space, CPU time, file size, no core files);
   the kernel it launches inherits them.
2. It executes the submission's code cells in order, errors allowed, within one wall-time budget
   for the whole notebook. A watcher kills the kernel when its resident memory (kernel and its
   children) passes the limit. When the kernel dies, the cell that killed it is skipped and a
   fresh kernel re-runs the other cells (at most `max_attempts` kernels).
3. Then it runs the grader's harness cells, one per exercise, each with its own time limit.
   The harness writes the learner's results to files the grader reads; this script never looks
   at them.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time


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


def main():
    t0 = time.monotonic()
    job = json.loads(sys.stdin.read())
    set_limits(job.get("limits", {}))

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from traitlets.config import Config

    report = {"timed_out": False, "memory_killed": False, "kernel_deaths": 0, "cell_errors": [],
              "skipped_cells": [], "cells_run": 0, "output_truncated": False, "harness": {},
              "runner_error": None, "timings": []}
    state = {"pid": None, "stop": False}
    rss_limit = job.get("rss_limit_bytes")
    output_limit = int(job.get("output_limit_bytes", 2_000_000))

    grader = os.getppid()

    def watch():
        while not state["stop"]:
            pid = state["pid"]
            if os.getppid() != grader:  # the grader is gone (killed): take the kernel down with us
                if pid:
                    kill_group(pid)
                os._exit(3)
            if pid and rss_limit and tree_rss(pid) > rss_limit:
                report["memory_killed"] = True
                kill_group(pid)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()

    class Client(NotebookClient):
        """nbclient with a cap on stored output and a flag raised on every timeout."""
        output_total = 0
        timed_out = False

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is None:
                return None
            if out.get("output_type") == "error":
                out["traceback"] = []
                out["evalue"] = str(out.get("evalue", ""))[:2000]
                return out
            Client.output_total += len(json.dumps(out))
            if Client.output_total > output_limit:
                if outs and outs[-1] is out:
                    outs.pop()
                report["output_truncated"] = True
                return None
            return out

        async def _async_handle_timeout(self, timeout, cell=None):
            Client.timed_out = True
            return await super()._async_handle_timeout(timeout, cell)

    cells = [nbformat.v4.new_code_cell(src) for src in job["cells"]]
    nb = nbformat.v4.new_notebook(cells=cells)
    n_learner = len(cells)
    harness = job.get("harness", [])
    deadline = time.monotonic() + float(job["timeout"])
    fatal = set()
    took = {}  # seconds each learner cell took the first time it ran
    done = set()
    env = job.get("env") or dict(os.environ)
    max_attempts = int(job.get("max_attempts", 3))

    def run_cell(client, cell, index, timeout):
        if index is None:  # a cell of the grader's: nbclient wants every cell inside the notebook
            nb.cells.append(cell)
            index = len(nb.cells) - 1
        Client.timed_out = False
        client.timeout = max(1, int(timeout + 0.999))
        client.execute_cell(cell, index, store_history=False)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        cell.outputs = []  # not needed any more; keeps the runner's memory flat
        return Client.timed_out, errors

    def responsive(client):
        probe = nbformat.v4.new_code_cell("pass")
        timed_out, _ = run_cell(client, probe, None, 5)
        return not timed_out

    for attempt in range(max_attempts):
        config = Config()
        config.KernelManager.transport = "ipc"  # unix sockets in the sandbox: no TCP ports to race for
        config.KernelManager.ip = os.path.join(job["sandbox"], f"kernel-{attempt}")
        client = Client(nb, config=config, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
                        error_on_timeout={"ename": "Timeout", "evalue": "the cell ran out of time",
                                          "traceback": []},
                        startup_timeout=int(job.get("startup_timeout", 60)), iopub_timeout=2,
                        record_timing=False, shutdown_kernel="immediate", resources={"metadata": {"path": job["sandbox"]}})
        where = None
        try:
            with client.setup_kernel(cwd=job["sandbox"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                report["timings"].append(("kernel up", round(time.monotonic() - t0, 2)))
                proc = getattr(getattr(client.km, "provisioner", None), "process", None)
                state["pid"] = getattr(proc, "pid", None)
                if state["pid"] and job.get("kernel_pid_file"):
                    with open(job["kernel_pid_file"], "a") as f:
                        f.write(f"{state['pid']}\n")
                # 1. the learner's cells, within the notebook's time budget
                del nb.cells[n_learner:]
                for i, cell in enumerate(nb.cells[:n_learner]):
                    if i in fatal:
                        continue
                    if i in took:  # ran before the last kernel died: run again, on its own budget
                        budget = 2 * took[i] + 5
                    elif report["timed_out"]:
                        continue
                    else:
                        budget = deadline - time.monotonic()
                        if budget <= 0:
                            report["timed_out"] = True
                            continue
                    where = ("cell", i)
                    started = time.monotonic()
                    timed_out, errors = run_cell(client, cell, i, budget)
                    if i not in took:
                        took[i] = time.monotonic() - started
                        report["cells_run"] += 1
                        for e in errors:
                            report["cell_errors"].append({"cell": i, "ename": str(e.get("ename", ""))[:200],
                                                          "evalue": str(e.get("evalue", ""))[:500]})
                    if timed_out:
                        report["timed_out"] = True
                        fatal.add(i)
                        if not responsive(client):
                            raise DeadKernelError("the kernel does not answer after a timeout")
                report["timings"].append(("cells done", round(time.monotonic() - t0, 2)))
                # 2. the grader's harness, one exercise at a time
                for k, h in enumerate(harness):
                    if h["id"] in done:
                        continue
                    where = ("harness", h["id"])
                    cell = nbformat.v4.new_code_cell(h["code"])
                    timed_out, errors = run_cell(client, cell, None, float(h["timeout"]))
                    done.add(h["id"])
                    if timed_out:
                        report["harness"][h["id"]] = "timeout"
                        if not responsive(client):
                            raise DeadKernelError("the kernel does not answer after a timeout")
                    elif errors:
                        e = errors[0]
                        report["harness"][h["id"]] = f"error: {e.get('ename')}: {str(e.get('evalue'))[:300]}"
                    else:
                        report["harness"][h["id"]] = "done"
            report["timings"].append(("harness done", round(time.monotonic() - t0, 2)))
            report["runner_error"] = None
            break
        except DeadKernelError:
            report["kernel_deaths"] += 1
            if where and where[0] == "cell":
                fatal.add(where[1])
                report["skipped_cells"].append(where[1])
            elif where:
                done.add(where[1])
                report["harness"].setdefault(where[1], "memory" if report["memory_killed"] else "died")
        except Exception as exc:  # the kernel could not start, or nbclient failed: report, don't hide
            report["runner_error"] = f"{type(exc).__name__}: {exc}"[:1000]
            if where is not None:
                break
            time.sleep(1)  # a kernel that failed to start (a busy machine): try a fresh one
        finally:
            if state["pid"]:
                kill_group(state["pid"])
            state["pid"] = None
            try:
                client._cleanup_kernel()
            except Exception:
                pass
    state["stop"] = True
    report["timings"].append(("end", round(time.monotonic() - t0, 2)))
    for h in harness:
        report["harness"].setdefault(h["id"], "not_run")
    tmp = job["report"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.replace(tmp, job["report"])


if __name__ == "__main__":
    main()
