"""`make lab` answers: JupyterLab starts and serves /lab, as root (containers) and as a normal user."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_lab(prefix=(), home=None, skip_setup=False):
    """Start `make lab` (with `prefix`, e.g. a user switch), wait for HTTP 200 on /lab, stop it."""
    port, token = _free_port(), "coursekit-test"
    args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    make = ["make", "-s", *(["-o", "setup"] if skip_setup else []), "lab", f"LAB_ARGS={args}"]
    env = dict(os.environ)
    if home is not None:
        env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_CONFIG_DIR=str(home / "config"),
                   IPYTHONDIR=str(home / "ipython"), XDG_CACHE_HOME=str(home / "cache"))
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([*prefix, *make], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as r:
                    return r.status
            except OSError:
                time.sleep(1)
        log.seek(0)
        pytest.fail(f"JupyterLab did not answer on /lab (exit {proc.poll()}):\n"
                    + log.read().decode(errors="replace")[-3000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_make_lab_answers_as_the_current_user():
    """As root this is the case JupyterLab refuses without --allow-root."""
    assert _serve_lab() == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_make_lab_answers_as_a_normal_user(tmp_path):
    """The same command as an unprivileged user: no --allow-root is passed, and it still serves.

    The user is `nobody`, given only the capability to read files (the venv's Python may live under
    /root, which other users cannot enter); it is not root, so JupyterLab treats it as a normal user.
    """
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
              "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    plan = subprocess.run([*prefix, "make", "-s", "-n", "-o", "setup", "lab"], cwd=ROOT,
                          capture_output=True, text=True)
    assert "jupyter lab" in plan.stdout and "--allow-root" not in plan.stdout, plan.stdout + plan.stderr
    assert _serve_lab(prefix, home=home, skip_setup=True) == 200
