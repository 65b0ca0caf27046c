"""The course website (`make site`), read in headless Chromium as a visitor would (`make test-site`).

The site is built with `make site` (the command the README and the Pages workflow use), served by a
local HTTP server (Sphinx's search needs http, not file://), and every page reachable from the home
page is opened. A page fails on
  * a console error, an uncaught script error, or a request that failed or got a 4xx/5xx answer;
  * any request to another host: a page must render on a closed network (no CDN, no web font);
  * an image that did not load (naturalWidth 0);
  * a link to the site that leads nowhere: a missing page or file, or a #fragment with no element;
  * a widget left for a widget manager (there is none: explorers must show their stored read-out).
Search is typed into the home page's search box like a visitor would. Screenshots of the home page
and of one notebook page go to tests/browser/artifacts/ (git-ignored) for a person to look at.
"""
from __future__ import annotations

import functools
import http.server
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

pytestmark = pytest.mark.site

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"   # git-ignored
SITE = REPO / "site" / "_build" / "html"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SEARCH_TERM = "SmoothQuant"                      # a method notebook 11 teaches
SEARCH_HIT = "11_outliers_and_smarter_rounding"
SHOT_PAGE = "03_quantization_theory"             # math, figures, an explorer and exercises
BUILD_TIMEOUT_S = 900                            # a fresh clone also creates .venv-site (pip)
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def built_site(chromium) -> Path:
    """`make site`, timed: the site as the README builds it (only once Chromium is known to be here)."""
    start = time.monotonic()
    run = subprocess.run(["make", "-s", "site"], cwd=REPO, capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S)
    assert run.returncode == 0, f"make site failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    print(f"\nmake site: {time.monotonic() - start:.1f} s")
    assert (SITE / "index.html").is_file()
    return SITE


@pytest.fixture(scope="session")
def site_url(built_site):
    """The built site over http on 127.0.0.1, on a free port, for this session."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    # under a sub-path, as GitHub Pages serves a project's site (https://OWNER.github.io/REPO/): a link
    # or image that starts with "/" would leave the site there, and fails here
    root = Path(tempfile.mkdtemp(prefix="site-root-"))
    (root / "course").symlink_to(built_site, target_is_directory=True)
    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/course/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Visitor:
    """One browser tab on the site, and what went wrong in it since `problems` was last cleared.
    Requests to any other host are refused and recorded in `outside`."""

    def __init__(self, context, site_url: str):
        self.page = context.new_page()
        self.problems: list[str] = []
        self.outside: list[str] = []
        local = urlparse(site_url).netloc

        def route(r):
            if urlparse(r.request.url).netloc == local:
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        context.route(re.compile(r"^(?!data:)"), route)
        add = self.problems.append
        self.page.on("console", lambda m: m.type == "error" and add(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: add(f"script error: {e}"))
        self.page.on("requestfailed", lambda r: add(f"request failed: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and add(f"HTTP {r.status}: {r.url}"))


@pytest.fixture(scope="session")
def visitor(chromium, site_url):
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        yield Visitor(context, site_url)
    finally:
        context.close()


# Every link of the page (resolved, fragment kept), every id, broken images and leftover widgets.
PAGE_FACTS = """() => ({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  broken_images: [...document.querySelectorAll('img')]
      .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src),
  widgets: document.querySelectorAll('.jupyter-widgets, script[type*="widget-view"]').length,
  static_widgets: document.querySelectorAll('.course-widget-static').length,
  exercises: document.querySelectorAll('.cell.tag_exercise').length,
  solutions: document.body.innerText.includes('BEGIN SOLUTION'),
  math: document.querySelectorAll('mjx-container').length,
  unrendered_math: [...document.querySelectorAll('.math')]
      .filter(e => !e.querySelector('mjx-container') || e.querySelector('mjx-merror')).length,
})"""


# MathJax typesets after the page has loaded: its promise settles when every formula is done.
MATH_DONE = """() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => true) : true"""


def _open(visitor: Visitor, url: str) -> dict:
    visitor.page.goto(url, wait_until="load")
    visitor.page.evaluate(MATH_DONE)
    visitor.page.wait_for_load_state("networkidle")
    return visitor.page.evaluate(PAGE_FACTS)


def _crawl(visitor: Visitor, site_url: str) -> tuple[dict, list]:
    """Open every HTML page reachable from the home page, and the search and index pages (a form and a
    <link> reach those); return {page: facts} and the problems."""
    start = [site_url + page for page in ("genindex.html", "search.html", "index.html")]
    facts, todo, problems, files = {}, start, [], set()
    while todo:
        url = todo.pop()
        if url in facts:
            continue
        visitor.problems.clear()
        facts[url] = f = _open(visitor, url)
        problems += [f"{url}: {p}" for p in visitor.problems]
        problems += [f"{url}: image did not load: {src}" for src in f["broken_images"]]
        if f["widgets"]:
            problems.append(f"{url}: {f['widgets']} widget view(s) left for a widget manager")
        for link in f["links"]:
            target, _ = urldefrag(link)
            if not target.startswith(site_url):
                if urlparse(target).netloc == urlparse(site_url).netloc:   # "/x": off the Pages sub-path
                    problems.append(f"{url}: link {link} leaves the site's folder")
                continue
            if target.endswith(".html") or target.endswith("/"):
                todo.append(target if target.endswith(".html") else target + "index.html")
            else:
                files.add(target)
    for target in sorted(files):             # downloads, images linked directly
        response = visitor.page.request.get(target)
        if response.status != 200:
            problems.append(f"link to {target}: HTTP {response.status}")
    for url, f in facts.items():            # every #fragment names an element of its page
        for link in f["links"]:
            target, fragment = urldefrag(link)
            if fragment and target in facts and fragment not in facts[target]["ids"]:
                problems.append(f"{url}: link to #{fragment} of {target}: no such element")
    return facts, problems


@pytest.fixture(scope="session")
def crawl(visitor, site_url):
    return _crawl(visitor, site_url)


def test_every_page_loads_clean_and_every_link_resolves(crawl, visitor, site_url):
    facts, problems = crawl
    pages = {url.removeprefix(site_url) for url in facts}
    missing = {f"lessons/{name}.html" for name in NOTEBOOKS} - pages
    assert not missing, f"notebook pages not reachable from the home page: {sorted(missing)}"
    problems += [f"request to another host: {url}" for url in sorted(set(visitor.outside))]
    assert not problems, "\n".join(problems[:60])


def test_notebook_pages_show_math_exercises_and_stored_widgets(crawl, site_url):
    facts, _ = crawl
    lessons = {url.removeprefix(site_url + "lessons/").removesuffix(".html"): f
               for url, f in facts.items() if "/lessons/" in url}
    assert lessons[SHOT_PAGE]["math"] > 0, "MathJax rendered no formula on notebook 03"
    unrendered = {n: f["unrendered_math"] for n, f in lessons.items() if f["unrendered_math"]}
    assert not unrendered, f"formulas MathJax left as TeX: {unrendered}"
    for name in ("01_data_types", "03_quantization_theory", "12_number_formats"):
        assert lessons[name]["static_widgets"] >= 1, f"{name}: the explorer's stored read-out is missing"
    for name, f in lessons.items():        # exercises as learners get them: no solution in sight
        assert f["exercises"] > 0 and not f["solutions"], name
    for name, f in lessons.items():        # the Colab badge and the learner copy's download
        assert any("colab.research.google.com" in link for link in f["links"]), name
        assert any(link.endswith(f"/{name}.ipynb") and "_downloads" in link for link in f["links"]), name


def test_search_finds_a_term_of_notebook_11(visitor, site_url):
    page = visitor.page
    visitor.problems.clear()
    page.goto(site_url + "index.html", wait_until="load")
    box = page.locator("input[name=q]").first
    box.fill(SEARCH_TERM)
    box.press("Enter")
    page.wait_for_url(re.compile(r"search\.html\?q="))
    hits = page.locator("#search-results li a")
    hits.first.wait_for(timeout=30_000)
    hrefs = hits.evaluate_all("as => as.map(a => a.href)")
    assert any(SEARCH_HIT in h for h in hrefs), f"search for {SEARCH_TERM!r} found {hrefs}"
    assert not visitor.problems, visitor.problems


def test_screenshots_for_a_person(chromium, site_url):
    """In a fresh tab of its own: no search highlights or scroll position left by another test."""
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    visitor = Visitor(context, site_url)
    ARTIFACTS.mkdir(exist_ok=True)
    shots = {"site-home.png": "index.html", f"site-{SHOT_PAGE}.png": f"lessons/{SHOT_PAGE}.html"}
    for name, path in shots.items():
        (ARTIFACTS / name).unlink(missing_ok=True)
        _open(visitor, site_url + path)
        height = min(visitor.page.evaluate("document.documentElement.scrollHeight"), 4000)
        visitor.page.screenshot(path=ARTIFACTS / name, full_page=True,
                             clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
        assert (ARTIFACTS / name).stat().st_size > 10_000, f"{name} looks empty"
    context.close()
    assert not visitor.problems + visitor.outside, visitor.problems + visitor.outside
    print(f"\nscreenshots: {', '.join(str(ARTIFACTS / n) for n in shots)}")
