"""Isolation: each submission's kernel runs under bubblewrap, a boundary rather than a convention.

With bubblewrap (`bwrap`, Debian's `bubblewrap`; `scripts/setup_bwrap.sh` installs it) the kernel
of one submission sees a file system built for it alone:

* read-only: the system (/usr, /etc), the Python installation and its environment (the venv),
  the installed `coursekit` package, with its exercise specs replaced by masked stubs (`masking`),
  the Hugging Face cache and coursekit's (SmolLM2, converted once by `make setup`);
* writable: its own fresh folder (HOME, TMPDIR and the working directory) and the folder where
  the harness writes its results; the hidden cases are read-only;
* private: /tmp and /dev/shm (empty tmpfs), /proc of its own PID namespace, no network (a network
  namespace with no interface up), no capabilities, an unprivileged uid in a user namespace.

Everything else is simply absent: the other submissions, the grader's output folder, the
instructor's files (master notebooks, the repository beyond the package). The kernel cannot see
the grader's processes, so it cannot signal them.

Without bubblewrap, or where it cannot run (no root and no unprivileged user namespaces), the
grader still grades, and says so: `Isolation.isolated` is False, grades.json carries it, and the
summary and the command's output start with the warning.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "bwrap", "none")
SANDBOX_UID = 65534  # "nobody" inside the user namespace; mapped to the grader's uid outside


class IsolationError(Exception):
    """`--isolation bwrap` was asked for and bubblewrap cannot run here."""


@dataclass(frozen=True)
class Isolation:
    """Whether submissions are isolated, with what, and, when they are not, why."""
    isolated: bool
    how: str = "none"
    reason: str = ""

    def to_json(self) -> dict:
        return {"isolated": self.isolated, "how": self.how, "reason": self.reason}

    @property
    def warning(self) -> str:
        """The line reports start with when submissions were not isolated ("" when they were)."""
        if self.isolated:
            return ""
        return (f"WARNING: submissions were NOT isolated ({self.reason}); their kernels ran as the "
                f"grader's user and could read, write and connect like it.")


def bwrap_path() -> str | None:
    return os.environ.get("COURSEKIT_BWRAP") or shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def probe(exe: str | None) -> tuple[bool, str]:
    """(usable, version or why not): run a trivial sandbox with the namespaces the kernel gets."""
    if not exe:
        return False, "bubblewrap (bwrap) is not installed; run scripts/setup_bwrap.sh"
    cmd = [exe, "--die-with-parent", "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
           "--gid", str(SANDBOX_UID), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bwrap could not be started: {exc}"
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        return False, f"bwrap cannot create namespaces here ({why[0][:200]}); run as root or enable " \
                      f"unprivileged user namespaces"
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = ""
    return True, version or "bubblewrap"


def resolve(mode: str) -> Isolation:
    """The isolation a batch runs under: "auto" (bubblewrap when it can run), "bwrap" (required,
    IsolationError otherwise) or "none" (asked for: no isolation)."""
    if mode not in MODES:
        raise ValueError(f"isolation must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return Isolation(False, "none", "isolation was turned off (--isolation none)")
    ok, said = probe(bwrap_path())
    if ok:
        return Isolation(True, said)
    if mode == "bwrap":
        raise IsolationError(said)
    return Isolation(False, "none", said)


def _readable_roots() -> list[str]:
    """What the kernel's Python needs to run: the interpreter's installation and the environment's."""
    import site
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))), *site.getsitepackages()}
    roots = {os.path.realpath(r) for r in found} | {os.path.abspath(r) for r in found}
    roots = {r for r in roots if os.path.isdir(r) and r != "/"}
    return sorted(r for r in roots if not any(o != r and r.startswith(o + "/") for o in roots))


def _system() -> list[str]:
    """The system's read-only part: /usr and /etc bound, merged-/usr links (/bin -> usr/bin) kept."""
    args: list[str] = []
    for d in ("/usr", "/etc"):
        if os.path.isdir(d) and not os.path.islink(d):
            args += ["--ro-bind", d, d]
    for d in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def wrapper(package_dir: Path, masked_exercises: Path | None, sandbox: Path, readable: list[Path],
            writable: list[Path], env: dict) -> list[str]:
    """The bwrap command line the kernel's own command is appended to.

    `package_dir` is the installed coursekit (bound read-only, wherever it lives, even inside the
    repository), `masked_exercises` replaces its exercises/ folder. `sandbox` is the kernel's HOME,
    TMPDIR and working directory; `readable` and `writable` are the harness's exchange folders.
    """
    exe = bwrap_path()
    args = [exe, "--die-with-parent", "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID), "--hostname", "grading-sandbox", "--cap-drop", "ALL",
            *_system(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if os.path.isdir("/sys/devices/system/cpu"):  # torch and OpenMP read the CPU topology here
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for r in _readable_roots():
        args += ["--ro-bind", r, r]
    pkg = os.path.realpath(package_dir)
    args += ["--ro-bind", pkg, pkg]
    if masked_exercises is not None:
        args += ["--ro-bind", str(masked_exercises), os.path.join(pkg, "exercises")]
    for cache in (env.get("HF_HOME"), env.get("COURSEKIT_CACHE_DIR")):   # models, read-only
        if cache and os.path.isdir(cache):
            args += ["--ro-bind", cache, cache]
    for p in readable:
        args += ["--ro-bind", str(p), str(p)]
    for p in [sandbox, *writable]:
        args += ["--bind", str(p), str(p)]
    # ipykernel exits when its parent looks gone: inside the PID namespace its parent is bubblewrap's
    # init, so the check is left to bubblewrap (--die-with-parent) instead.
    return args + ["--unsetenv", "JPY_PARENT_PID", "--chdir", str(sandbox), "--"]


@dataclass(frozen=True)
class Confinement:
    """The isolation of a batch and what it binds: built once per batch, used by every submission."""
    isolation: Isolation
    masked_exercises: Path | None = None

    def kernel_wrap(self, sandbox: Path, readable: list[Path], writable: list[Path], env: dict) -> list[str] | None:
        if not self.isolation.isolated:
            return None
        import coursekit
        return wrapper(Path(coursekit.__file__).resolve().parent, self.masked_exercises, sandbox, readable,
                       writable, env)
