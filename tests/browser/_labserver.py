"""Start and stop a throw-away JupyterLab server for the browser test.

The server listens on 127.0.0.1 with a random free port and a random token, runs in its own
process group (``start_new_session``), keeps its settings, workspaces, runtime files, config and
data in a temporary directory, and serves a *copy* of the notebooks, so nothing the browser does
(autosave, checkpoints) can write to the repository. Kernels are started by the server in process
groups of their own (jupyter_client does that), so ``stop()`` shuts them down through the REST API
first, then kills the server's process group, then kills whatever descendant is left, and
finally checks that none of the processes it saw is still alive.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

# User settings for the test's JupyterLab: never autosave (the notebooks must stay as they are on
# disk), render every cell (windowed rendering would leave off-screen outputs out of the DOM), no
# news / update checks (closed network), no "kernel busy" confirmation dialogs.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, notebooks: list[Path], workdir: Path, log_path: Path):
        self.workdir = workdir
        self.log_path = log_path
        self.root = workdir / "root"
        self.token = secrets.token_hex(24)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._seen: dict[int, float] = {}  # pid -> create_time of every process of ours we saw
        self.root.mkdir(parents=True)
        for nb in notebooks:  # a snapshot: others may edit the masters while the test runs
            shutil.copy2(nb, self.root / nb.name)
        for rel, values in LAB_SETTINGS.items():
            f = workdir / "settings" / (rel + ".jupyterlab-settings")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))

    # -- start ---------------------------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        # tests/conftest.py sets MPLBACKEND=Agg for the unit tests; a kernel that inherits it
        # would not show figures inline. The kernel must behave like the one `make lab` starts.
        env.pop("MPLBACKEND", None)
        env.update({
            "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "IPYTHONDIR": str(self.workdir / "ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        return env

    def start(self, timeout: float = 90.0) -> None:
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            cmd = [
                sys.executable, "-m", "jupyterlab",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--ServerApp.open_browser=False", "--no-browser",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.terminals_enabled=False",
                f"--LabApp.user_settings_dir={self.workdir / 'settings'}",
                f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",  # no PyPI look-ups from the server
            ]
            if os.geteuid() == 0:  # CI containers run as root; the server refuses without this
                cmd.append("--ServerApp.allow_root=True")
            log_start = self.log_size()
            log = open(self.log_path, "ab")
            log.write(f"\n===== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self._env(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            log.close()
            self._remember()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"JupyterLab exited with code {self.proc.returncode}"
                    break
                try:
                    self.api("GET", "/api/status", timeout=2)
                    self._remember()
                    return
                except (urllib.error.URLError, OSError):
                    time.sleep(0.25)
            else:
                last_error = f"JupyterLab did not answer within {timeout:.0f} s"
                self.stop()
                break
            if "already in use" not in self.log_text(log_start):
                break  # not a port race: retrying will not help
        raise RuntimeError(f"{last_error}; see {self.log_path}")

    # -- REST ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook_name: str) -> str:
        return f"{self.url}/lab/tree/{notebook_name}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Shut down every session and kernel (between notebooks: frees memory and CPU)."""
        self._remember()
        for s in self.api("GET", "/api/sessions") or []:
            try:
                self.api("DELETE", f"/api/sessions/{s['id']}", timeout=30)
            except urllib.error.HTTPError:
                pass
        for k in self.api("GET", "/api/kernels") or []:
            try:
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=30)
            except urllib.error.HTTPError:
                pass

    def log_text(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    # -- stop ----------------------------------------------------------------------------------
    def _remember(self) -> None:
        """Record the server and all its descendants (kernels included) with their start time."""
        if self.proc is None:
            return
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                self._seen.setdefault(p.pid, p.create_time())
        except psutil.NoSuchProcess:
            pass

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for pid, created in self._seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    def stop(self) -> tuple[list[str], list[str]]:
        """Stop everything this server started.

        Returns (killed_late, still_alive): processes that outlived the graceful shutdown and the
        process-group kill and had to be killed one by one, and processes that could not be
        stopped at all (both should be empty).
        """
        if self.proc is None:
            return [], []
        self._remember()
        if self.proc.poll() is None:
            try:
                self.shutdown_kernels()
            except (urllib.error.URLError, OSError, ValueError):
                pass
            self._remember()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server's own process group
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        try:  # nothing may be left in the server's process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        leftovers = self._alive()
        for p in leftovers:  # e.g. a kernel (own process group) that outlived the shutdown
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=10)
        still = self._alive()
        self.proc = None
        return ([f"pid {p.pid}" for p in leftovers if p not in still],
                [f"pid {p.pid} {' '.join(p.cmdline())[:120]}" for p in still])
