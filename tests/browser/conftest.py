"""Fixtures for the browser test: one JupyterLab server and one headless Chromium per session.

Everything here is skipped (not failed) when Playwright or Chromium is missing; run
tests/browser/setup.sh to install them. Select or deselect the test with ``-m browser`` /
``-m "not browser"``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARTIFACTS = HERE / "artifacts"  # git-ignored (tests/browser/.gitignore)

# Chromium on a closed network, as root, without a GPU.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-gpu", "--disable-quic",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: runs the notebooks in JupyterLab in headless Chromium "
                   "(needs playwright + chromium: tests/browser/setup.sh)")
    config.addinivalue_line(
        "markers", "site: builds the course website and reads every page in headless Chromium "
                   "(`make test-site`; needs playwright + chromium)")


def find_chromium() -> str | None:
    for candidate in (os.environ.get("COURSEKIT_CHROMIUM"), "/usr/bin/chromium", "chromium",
                      "chromium-browser", "google-chrome"):
        if candidate:
            path = shutil.which(candidate)
            if path:
                return path
    return None


def missing_requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (run tests/browser/setup.sh)"
    try:
        import jupyterlab  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed"
    if find_chromium() is None:
        return ("no Chromium found (/usr/bin/chromium; run tests/browser/setup.sh, i.e. "
                "`apt-get install chromium` as root, or set COURSEKIT_CHROMIUM)")
    return None


@pytest.fixture(scope="session")
def browser_requirements() -> None:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts_dir(browser_requirements) -> Path:
    """Screenshots, per-notebook reports and the server log (old screenshots are removed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(browser_requirements, artifacts_dir):
    from _labserver import LabServer

    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-browser-"))
    log = artifacts_dir / "jupyterlab-server.log"
    log.unlink(missing_ok=True)
    server = LabServer(notebooks, workdir, log)
    try:
        server.start()
        yield server
    finally:
        killed_late, still_alive = server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if killed_late:
            print(f"\nbrowser test: had to kill leftover processes one by one: {killed_late}")
        assert not still_alive, f"processes started by the browser test are still alive: {still_alive}"


@contextmanager
def launched_chromium():
    """Headless Chromium (the system's, never a downloaded one), closed afterwards with every process
    it started: a test that leaves a browser behind fails."""
    import psutil
    from playwright.sync_api import sync_playwright

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True,
                                     args=CHROMIUM_ARGS)
        ours = [p for p in me.children(recursive=True) if p.pid not in before]
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()
    _gone, alive = psutil.wait_procs([p for p in ours if p.is_running()], timeout=10)
    for p in alive:
        p.kill()
    assert not alive, f"browser processes left after closing Chromium: {[p.pid for p in alive]}"


@pytest.fixture(scope="session")
def browser(lab_server):
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium alone, for pages that need no JupyterLab (the course website)."""
    try:
        import playwright.sync_api  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as e:
        pytest.skip(f"{e.name} is not installed (run tests/browser/setup.sh)")
    if find_chromium() is None:
        pytest.skip("no Chromium found (run tests/browser/setup.sh, or set COURSEKIT_CHROMIUM)")
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="session")
def lab_context(browser):
    """One browser context for all notebooks: they share the HTTP cache (faster page loads)."""
    from _page_js import VIEWPORT

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        yield context
    finally:
        context.close()
