"""Run every notebook in JupyterLab in headless Chromium and check what a learner would see.

For each notebooks/*.ipynb (a snapshot copy, served by one JupyterLab for the whole session):
open it, Run All (``runmenu:run-all``), wait until the run has finished and the kernel is idle,
then fail on
  * an error output (ename / traceback), or a traceback printed to stderr;
  * a widget output that did not render ("Error displaying widget", "Model not found", the
    plain-text fallback where the master notebook has a widget, an empty view);
  * a broken image (an <img> with naturalWidth 0; external images cannot load on a closed
    network and are only listed);
  * a JupyterLab error dialog.
Then, for every widget output that has controls (the explorers), move each control like a user
(slider: keyboard, mouse drag as fallback; toggle buttons and toggle-button groups: a click;
dropdown: another option; number box: type a value + Enter) and require the linked read-outs
(HTML labels, images compared by their bytes, Output widgets) to change, with no traceback in
the kernel's log. Screenshots of each notebook after Run All and after the interaction go to
tests/browser/artifacts/ (git-ignored), with a per-notebook report.

Select it with ``-m browser``, leave it out with ``-m "not browser"``. It skips when Playwright
or Chromium is missing (tests/browser/setup.sh installs them).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

import _page_js as js

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent.parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# COURSEKIT_BROWSER_NOTEBOOKS=widgets (what `make test` sets): only the notebooks with widgets, the part
# nothing else drives. The others' outputs are compared by nbval, rendered by the site's browser check
# (make test-site) and run in a fresh runtime by make colab-check; `make browser` runs them all here.
ONLY_WIDGETS = os.environ.get("COURSEKIT_BROWSER_NOTEBOOKS", "all") == "widgets"
NOTEBOOKS = [p for p in sorted((REPO / "notebooks").glob("*.ipynb"))
             if not ONLY_WIDGETS or WIDGET_MIME in p.read_text(encoding="utf-8")]
# Run All, per notebook; env COURSEKIT_BROWSER_RUN_TIMEOUT overrides. nbval allows 300 s per
# *cell*; on a busy 2-core machine notebook 04 alone took more than 300 s in the browser.
RUN_TIMEOUT_S = int(os.environ.get("COURSEKIT_BROWSER_RUN_TIMEOUT", "600"))
LOAD_TIMEOUT_S = 90          # page load + kernel start
WIDGET_TIMEOUT_S = 30        # a widget view to render / a read-out to change after an interaction
VIEWPORT = js.VIEWPORT
# taller notebooks are captured in several screenshots
MAX_SHOT_HEIGHT = int(os.environ.get("COURSEKIT_BROWSER_MAX_SHOT_HEIGHT", "12000"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LOG_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Exception in comm_msg|"
                           r"Error in callback|Error: .*widget", re.I)


class _Abort(Exception):
    """Stop checking a notebook (the problem is already recorded)."""


class Problems(list):
    def add(self, cell: dict | None, what: str) -> None:
        if cell is None:
            self.append(what)
            return
        first = next((line for line in cell["source"].splitlines() if line.strip()), "")
        count = cell.get("execution_count")
        self.append(f"cell #{cell['index']} (In [{count if count is not None else ' '}]: "
                    f"{first[:70]!r}): {what}")


def _saved_widget_cells(path: Path) -> set[int]:
    """Indices of the cells whose stored (master) outputs show a widget."""
    nb = json.loads(path.read_text())
    return {i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and any(
        WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))}


# -- screenshots ---------------------------------------------------------------------------------
def _screenshot(page, stem: Path) -> list[Path]:
    """The whole notebook: size the window to the notebook (it scrolls inside its own panel);
    a notebook taller than MAX_SHOT_HEIGHT is captured in parts."""
    g = page.evaluate(js.SCROLLER)
    height = int(min(g["content"] + g["top"] + g["below"], MAX_SHOT_HEIGHT))
    height = max(height, VIEWPORT["height"])
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_function("(h) => window.innerHeight === h", arg=height, timeout=10_000)
    g = page.evaluate(js.SCROLLER)
    shots = []
    if g["content"] <= g["client"]:
        page.evaluate(js.SCROLL_TO, 0)
        shots.append(stem.parent / f"{stem.name}.png")
        page.screenshot(path=str(shots[-1]))
    else:
        step = max(g["client"] - 40, 200)
        last = None
        for n, y in enumerate(range(0, g["content"], step), start=1):
            at = page.evaluate(js.SCROLL_TO, y)
            if at == last:  # the panel cannot scroll further: the previous part was the last
                break
            last = at
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            shots.append(stem.parent / f"{stem.name}-part{n}.png")
            page.screenshot(path=str(shots[-1]))
        page.evaluate(js.SCROLL_TO, 0)
    return shots


# -- widget interaction --------------------------------------------------------------------------
def _wait_settled(page, k: int, before: dict, timeout: float) -> tuple[dict, list[str]]:
    """Wait until the read-outs of widget k differ from `before`, the kernel is idle and the
    read-outs stop changing; return the last snapshot and which kinds of read-out changed."""
    deadline = time.monotonic() + timeout
    snap = before
    while time.monotonic() < deadline:
        snap = page.evaluate(js.SNAPSHOT, k)
        if snap != before:
            break
        page.wait_for_timeout(100)
    else:
        return snap, []
    # Changed: let the rest of the update arrive (label and image come in separate messages).
    page.wait_for_function(js.KERNEL_IDLE, timeout=max(1, deadline - time.monotonic()) * 1000)
    while time.monotonic() < deadline:
        page.wait_for_timeout(150)
        again = page.evaluate(js.SNAPSHOT, k)
        if again == snap:
            break
        snap = again
    changed = [kind for kind in ("labels", "images", "outputs") if snap[kind] != before[kind]]
    return snap, changed


def _interact(page, server, k: int, cell: dict, dom: dict, problems: Problems, log: list[str]):
    root = page.locator(f'[data-bt-widget="{k}"]')
    readouts = {kind: n for kind, n in dom["readouts"].items() if n}
    if not readouts:
        problems.add(cell, f"widget #{k} has controls {dom['controls']} but no read-out "
                           "(HTML label, image or Output widget) to check")
        return

    def check(action: str, act) -> None:
        before = page.evaluate(js.SNAPSHOT, k)
        log_start = server.log_size()
        note = act()
        if note and note.startswith("skip"):
            log.append(f"widget #{k} (cell #{cell['index']}): {action}: {note}")
            return
        after, changed = _wait_settled(page, k, before, WIDGET_TIMEOUT_S)
        new_log = server.log_text(log_start)
        if LOG_TRACEBACK.search(new_log):
            excerpt = "\n".join(new_log.strip().splitlines()[-15:])
            problems.add(cell, f"{action}: the kernel logged an error:\n{excerpt}")
        if any(img.endswith(":BROKEN") for img in after["images"]):
            problems.add(cell, f"{action}: an image of the widget is broken afterwards")
        failed = [label for label in after["labels"] if "could not redraw" in label]
        if failed:   # the explorer's callback raised: coursekit.widgets shows the error in its read-out
            problems.add(cell, f"{action}: {failed[0][:400]}")
        if not changed:
            problems.add(cell, f"{action}: no linked read-out changed within {WIDGET_TIMEOUT_S} s "
                               f"(read-outs: {readouts}; kernel {page.evaluate(js.KERNEL_STATE)})")
        log.append(f"widget #{k} (cell #{cell['index']}): {action}{' (' + note + ')' if note else ''}"
                   f" -> changed: {', '.join(changed) or 'NOTHING'}")

    # Sliders: keyboard first (focus the handle, arrow key), a mouse drag when the key did nothing.
    handles = root.locator(".widget-slider .noUi-handle")
    for i in range(handles.count()):
        h = handles.nth(i)
        container = root.locator(".widget-slider").nth(i)
        name = container.locator(".widget-label").first.inner_text().strip() or f"#{i}"

        def move_slider(h=h, container=container):
            st = h.evaluate(js.SLIDER_STATE)
            up = st["now"] is None or st["max"] is None or float(st["now"]) < float(st["max"])
            readout = container.locator(".widget-readout")
            old = readout.inner_text() if readout.count() else st["now"]
            h.focus()
            page.keyboard.press("ArrowRight" if up else "ArrowLeft")
            try:
                page.wait_for_function(
                    "([h, old]) => h.getAttribute('aria-valuenow') !== old",
                    arg=[h.element_handle(), st["now"]], timeout=3000)
                return f"keyboard {'ArrowRight' if up else 'ArrowLeft'}: {old} -> {h.get_attribute('aria-valuenow')}"
            except Exception:
                box = h.bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + (60 if up else -60), y, steps=8)
                page.mouse.up()
                return f"mouse drag (keyboard did nothing): {old} -> {h.get_attribute('aria-valuenow')}"

        check(f"slider {name!r}", move_slider)

    # Groups of toggle buttons (ToggleButtons): click the last button that is not selected (for
    # the quantization explorer: 'per_group', which also enables the group-size dropdown).
    groups = root.locator(".widget-toggle-buttons")
    for i in range(groups.count()):
        group = groups.nth(i)
        name = group.locator(".widget-label").first.inner_text().strip() or f"#{i}"
        target = group.locator("button:not(.mod-active):not([disabled])").last

        def click_group(target=target):
            if not target.count():
                return "skip: no other enabled option"
            label = target.inner_text().strip()
            handle = target.element_handle()   # the button itself: `target` re-resolves after the click
            target.click()
            # A click the headless browser lost (the button never turned active) is the harness's
            # problem, not the widget's: click once more and say so. A button that turned active but
            # changed no read-out still fails below.
            try:
                page.wait_for_function("b => b.classList.contains('mod-active')", arg=handle, timeout=5000)
            except Exception:
                handle.click()
                return f"clicked {label!r}, twice: the first click did not select it"
            return f"clicked {label!r}"

        check(f"toggle buttons {name!r}", click_group)

    # Single toggle buttons (the bit explorer's bits): the first and the last one.
    toggles = root.locator("button.widget-toggle-button[data-bt-toggle]")
    n = toggles.count()
    for i in sorted({0, n - 1}) if n else []:
        t = toggles.nth(i)
        title = t.get_attribute("title") or f"#{i}"
        check(f"toggle button {i} ({title})", lambda t=t: (t.click(), "clicked")[1])

    # Dropdowns: pick the next option (after the clicks above, a dependent one may be enabled).
    selects = root.locator(".widget-dropdown select")
    for i in range(selects.count()):
        sel = selects.nth(i)
        name = root.locator(".widget-dropdown").nth(i).locator(".widget-label").first.inner_text().strip()

        def pick(sel=sel):
            if sel.is_disabled():
                return "skip: disabled"
            opts = sel.evaluate("s => [...s.options].map(o => o.value)")
            cur = sel.evaluate("s => s.selectedIndex")
            if len(opts) < 2:
                return "skip: a single option"
            nxt = (cur + 1) % len(opts)
            sel.select_option(index=nxt)
            return f"selected option {nxt}"

        check(f"dropdown {name or i!r}", pick)

    # Number boxes (FloatText / IntText): type a value and press Enter.
    boxes = root.locator(".widget-text input[type=number]")
    for i in range(boxes.count()):
        box = boxes.nth(i)

        def type_value(box=box):
            if box.is_disabled():
                return "skip: disabled"
            value = "0.1" if box.input_value() != "0.1" else "2.5"
            box.fill(value)
            box.press("Enter")
            return f"typed {value}"

        check(f"number box #{i}", type_value)


# -- the test ------------------------------------------------------------------------------------
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_browser(notebook: Path, lab_server, lab_context, artifacts_dir):
    name = notebook.name
    stem = artifacts_dir / notebook.stem
    problems, log, console = Problems(), [], []
    shots: list[Path] = []
    page = lab_context.new_page()
    page.set_default_timeout(30_000)
    # Closed network: answer anything that is not our server at once instead of letting it hang.
    page.route(lambda url: not url.startswith(lab_server.url), lambda route: route.abort())
    page.on("console", lambda m: console.append(f"console.{m.type}: {m.text[:300]}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    t0 = time.monotonic()
    cells: list[dict] = []
    try:
        page.goto(lab_server.lab_url(name), wait_until="domcontentloaded",
                  timeout=LOAD_TIMEOUT_S * 1000)
        try:
            page.wait_for_function(js.NOTEBOOK_READY, arg=name, timeout=LOAD_TIMEOUT_S * 1000,
                                   polling=250)
        except Exception:
            dialogs = page.evaluate(js.DIALOGS) if page.evaluate("!!window.jupyterapp") else []
            problems.add(None, f"the notebook did not open with an idle kernel within "
                               f"{LOAD_TIMEOUT_S} s{'; dialog: ' + ' | '.join(dialogs) if dialogs else ''}")
            shots += _screenshot(page, stem.parent / f"{stem.name}.load-failed")
            raise _Abort
        has_runmenu = page.evaluate(js.LAYOUT)
        command = "runmenu:run-all" if has_runmenu else "notebook:run-all-cells"
        log.append(f"opened in {time.monotonic() - t0:.1f} s; Run All via {command}")

        t_run = time.monotonic()
        page.evaluate(js.START_RUN_ALL, command)
        try:
            page.wait_for_function(js.RUN_FINISHED, timeout=RUN_TIMEOUT_S * 1000, polling=500)
            log.append(f"Run All finished in {time.monotonic() - t_run:.1f} s "
                       f"(result: {page.evaluate('JSON.stringify(window.__bt_run)')})")
        except Exception:
            running = page.evaluate(js.RUNNING_CELLS)
            problems.add(None, f"Run All did not finish within {RUN_TIMEOUT_S} s "
                               f"(cells still running/queued: {running[:5]}; "
                               "COURSEKIT_BROWSER_RUN_TIMEOUT raises the limit)")
            log.append(f"Run All timed out after {time.monotonic() - t_run:.1f} s")
            page.evaluate(js.INTERRUPT)
        try:
            page.wait_for_function(js.WIDGETS_RENDERED, timeout=WIDGET_TIMEOUT_S * 1000)
        except Exception:
            pass  # reported per cell below
        try:
            page.wait_for_function(js.IMAGES_SETTLED, timeout=20_000)
        except Exception:
            pass  # incomplete images are reported below

        # ---- static checks -----------------------------------------------------------------
        cells = page.evaluate(js.COLLECT)
        saved_widgets = _saved_widget_cells(lab_server.root / name)
        not_run = [c["index"] for c in cells if c["type"] == "code" and c["execution_count"] is None
                   and c["source"].strip()]
        for c in cells:
            if c["type"] != "code":
                continue
            for o in c["outputs"]:
                if o["output_type"] == "error":
                    tb = ANSI.sub("", o["traceback"]).strip().splitlines()
                    problems.add(c, f"error output {o['ename']}: {o['evalue']}\n      "
                                    + "\n      ".join(tb[-6:]))
                elif o["output_type"] == "stream" and o["name"] == "stderr":
                    if "Traceback (most recent call last)" in o["text"]:
                        problems.add(c, "traceback printed to stderr:\n      "
                                        + "\n      ".join(o["text"].strip().splitlines()[-6:]))
                    else:
                        log.append(f"cell #{c['index']}: stderr (not an error): {o['text'][:200]!r}")
            model_widgets = sum(WIDGET_MIME in o["mimes"] for o in c["outputs"])
            dom_widgets = [d for d in c["dom_outputs"] if d["mime"] == WIDGET_MIME]
            if c["index"] in saved_widgets and not model_widgets and c["execution_count"] is not None:
                plain = next((o["plain"] for o in c["outputs"] if o["plain"]), None)
                problems.add(c, "the master notebook shows a widget here, the run produced none"
                                + (f" (plain text instead: {plain!r})" if plain else ""))
            if model_widgets != len(dom_widgets):
                shown = [d["mime"] or d["html"][:400] for d in c["dom_outputs"]]
                problems.add(c, f"{model_widgets} widget output(s) from the kernel but "
                                f"{len(dom_widgets)} rendered as widgets (rendered as: {shown}; "
                                "plain-text fallback: is the ipywidgets lab extension missing?)")
            for d in c["dom_outputs"]:
                if re.search(r"Error displaying widget|Model not found", d["text"]):
                    problems.add(c, f"widget did not render: {d['text'][:200]!r}")
                elif d["mime"] == WIDGET_MIME and not d.get("rendered"):
                    problems.add(c, f"widget output #{d['widget']} is empty after "
                                    f"{WIDGET_TIMEOUT_S} s (no widget view rendered)")
        if not_run and not any(p.startswith("Run All") for p in problems):
            problems.add(None, f"{len(not_run)} code cell(s) were not executed (Run All stops at "
                               f"the first error): cells {not_run[:10]}")
        by_index = {c["index"]: c for c in cells}
        for img in page.evaluate(js.IMAGES):
            where = by_index.get(img["cell"])
            if img["external"]:
                log.append(f"cell #{img['cell']}: external image not loaded (closed network): {img['src']}")
            elif not img["complete"] or img["natural_width"] == 0:
                problems.add(where, f"broken image (naturalWidth {img['natural_width']}, "
                                    f"complete {img['complete']}): {img['src']}")
        for d in page.evaluate(js.DIALOGS):
            problems.add(None, f"JupyterLab dialog open: {d!r}")
        shots += _screenshot(page, stem.parent / f"{stem.name}.1-after-run-all")

        # ---- interaction ---------------------------------------------------------------------
        explorers = [(c, d) for c in cells if c["type"] == "code" for d in c["dom_outputs"]
                     if d["mime"] == WIDGET_MIME and d.get("rendered") and any(d["controls"].values())]
        for c, d in explorers:
            _interact(page, lab_server, d["widget"], c, d, problems, log)
        if explorers:
            for dlg in page.evaluate(js.DIALOGS):
                problems.add(None, f"JupyterLab dialog open after the interaction: {dlg!r}")
            shots += _screenshot(page, stem.parent / f"{stem.name}.2-after-interaction")
        log.append(f"{len(explorers)} interactive widget(s); total {time.monotonic() - t0:.1f} s")
    except _Abort:
        pass
    except Exception as e:  # a Playwright time-out or similar: report it with the context
        problems.add(None, f"test harness error: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        try:
            shots += _screenshot(page, stem.parent / f"{stem.name}.error")
        except Exception:
            pass
    finally:
        report = stem.parent / f"{stem.name}.report.txt"
        report.write_text(
            f"{name}\n\nPROBLEMS ({len(problems)}):\n" + "\n".join(f"- {p}" for p in problems)
            + "\n\nLOG:\n" + "\n".join(log) + "\n\nBROWSER CONSOLE (errors/warnings):\n"
            + "\n".join(console[:200]) + "\n\nSCREENSHOTS:\n" + "\n".join(map(str, shots)) + "\n")
        page.close()
        try:
            lab_server.shutdown_kernels()
        except Exception:
            pass
    rel = lambda p: p.relative_to(REPO) if p.is_relative_to(REPO) else p  # noqa: E731
    assert not problems, (
        f"{name}: {len(problems)} problem(s) in the browser:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + f"\n  screenshots: {', '.join(str(rel(s)) for s in shots) or 'none'}"
        + f"\n  report: {rel(report)}")
