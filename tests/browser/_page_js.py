"""JavaScript snippets the browser test evaluates in the JupyterLab page.

They rely on ``window.jupyterapp`` (the server runs with ``--LabApp.expose_app_in_browser``) and
on the DOM classes of JupyterLab 4 and ipywidgets 8.
"""

VIEWPORT = {"width": 1400, "height": 1000}  # the browser window before it is sized to a notebook

# The notebook `name` is open, its kernel is connected and idle.
NOTEBOOK_READY = """(name) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return false;
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== name || !w.context.isReady) return false;
  if (!w.sessionContext || !w.sessionContext.isReady) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && k.connectionStatus === 'connected'
         && !!w.content.node.querySelector('.jp-Cell');
}"""

DIALOGS = """() => [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 400))"""

LAYOUT = """() => {
  const app = window.jupyterapp;
  app.shell.collapseLeft();
  app.shell.collapseRight();
  return app.commands.hasCommand('runmenu:run-all');
}"""

# Start Run All; the command's promise resolves when the last queued cell has finished.
START_RUN_ALL = """(cmd) => {
  window.__bt_run = {done: false, started: Date.now()};
  Promise.resolve(window.jupyterapp.commands.execute(cmd)).then(
    r => { window.__bt_run = {done: true, result: r}; },
    e => { window.__bt_run = {done: true, error: String(e)}; });
  return true;
}"""

KERNEL_IDLE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""

# For a failure message: what the page knows of its kernel.
KERNEL_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? `${k.status}, ${k.connectionStatus}` : 'none';
}"""

RUN_FINISHED = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const running = [...w.content.node.querySelectorAll('.jp-InputPrompt')]
      .some(e => e.textContent.includes('*'));
  return window.__bt_run && window.__bt_run.done && !!k && k.status === 'idle' && !running;
}"""

RUNNING_CELLS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return w.content.widgets.map((c, i) => [i, c.node.querySelector('.jp-InputPrompt')])
      .filter(([i, p]) => p && p.textContent.includes('*')).map(([i]) => i);
}"""

INTERRUPT = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  if (k) k.interrupt();
}"""

# Every widget output has rendered a view (or an error message).
WIDGETS_RENDERED = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  // The widget renderer's output node has no data-mime-type (the standard renderers' have one).
  const outs = w.content.node.querySelectorAll('.jp-Cell-outputArea .jp-OutputArea-output:not([data-mime-type])');
  return [...outs].every(o => o.querySelector('.jupyter-widgets') ||
      /Error displaying widget|Model not found/.test(o.innerText));
}"""

IMAGES_SETTLED = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return [...w.content.node.querySelectorAll('img')].every(img => img.complete);
}"""

# One record per cell: model outputs (what the kernel sent) and the DOM outputs (what rendered).
# Tags each cell node with data-bt-cell and each top-level widget output with data-bt-widget.
COLLECT = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  let nWidget = 0;
  const join = t => Array.isArray(t) ? t.join('') : (t || '');
  return w.content.widgets.map((cell, i) => {
    const m = cell.model;
    cell.node.setAttribute('data-bt-cell', String(i));
    const rec = {index: i, type: m.type, source: m.sharedModel.getSource()};
    if (m.type !== 'code') return rec;
    rec.execution_count = m.executionCount;
    rec.outputs = m.outputs.toJSON().map(o => ({
      output_type: o.output_type, name: o.name || null, text: join(o.text),
      ename: o.ename || null, evalue: o.evalue || null,
      traceback: (o.traceback || []).join('\\n'),
      mimes: o.data ? Object.keys(o.data) : [],
      plain: o.data && o.data['text/plain'] ? join(o.data['text/plain']).slice(0, 300) : null}));
    const area = cell.node.querySelector('.jp-Cell-outputArea');
    const doms = area ? [...area.children].map(ch => ch.querySelector(':scope > .jp-OutputArea-output'))
                              .filter(e => e) : [];
    rec.dom_outputs = doms.map(e => {
      // JupyterLab marks each rendered output with its MIME type, except the ipywidgets
      // renderer's output (a Panel); an output without the attribute is a widget view.
      const mime = e.getAttribute('data-mime-type') || 'application/vnd.jupyter.widget-view+json';
      const d = {mime: mime, text: e.innerText.slice(0, 2000), widget: null,
                 html: e.outerHTML.slice(0, 600)};
      if (mime === 'application/vnd.jupyter.widget-view+json') {
        d.widget = nWidget;
        e.setAttribute('data-bt-widget', String(nWidget++));
        d.rendered = !!e.querySelector('.jupyter-widgets');
        d.controls = {
          sliders: e.querySelectorAll('.widget-slider .noUi-handle').length,
          toggle_buttons: e.querySelectorAll('.widget-toggle-buttons').length,
          // stand-alone ToggleButtons (the buttons of a ToggleButtons group share the class)
          toggles: [...e.querySelectorAll('button.widget-toggle-button')]
              .filter(b => !b.closest('.widget-toggle-buttons'))
              .map(b => b.setAttribute('data-bt-toggle', '')).length,
          dropdowns: e.querySelectorAll('.widget-dropdown select').length,
          number_inputs: e.querySelectorAll('.widget-text input[type=number]').length,
        };
        d.readouts = {
          labels: e.querySelectorAll('.widget-html-content').length,
          images: e.querySelectorAll('img.widget-image').length,
          outputs: e.querySelectorAll('.widget-output').length,
        };
      }
      return d;
    });
    return rec;
  });
}"""

IMAGES = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return [...w.content.node.querySelectorAll('img')].map(img => {
    const cell = img.closest('[data-bt-cell]');
    return {cell: cell ? Number(cell.getAttribute('data-bt-cell')) : -1,
            src: img.getAttribute('src') ? img.src.slice(0, 100) : '(no src)',
            complete: img.complete, natural_width: img.naturalWidth,
            external: /^https?:/.test(img.src) && !img.src.startsWith(location.origin)};
  });
}"""

# The linked outputs of widget k: HTML labels, images (hash of the bytes), Output widgets.
SNAPSHOT = """async (k) => {
  const root = document.querySelector(`[data-bt-widget="${k}"]`);
  if (!root) return null;
  const labels = [...root.querySelectorAll('.widget-html-content')].map(e => e.innerHTML);
  const outputs = [...root.querySelectorAll('.widget-output')].map(e => e.innerHTML);
  const images = [];
  for (const img of root.querySelectorAll('img.widget-image')) {
    let h = 'no-src';
    if (img.src) {
      try {
        const buf = await (await fetch(img.src)).arrayBuffer();
        const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
        h = [...d].map(b => b.toString(16).padStart(2, '0')).join('').slice(0, 16) + ':' + buf.byteLength;
      } catch (e) { h = 'unreadable:' + img.src.slice(0, 60); }
    }
    images.push(h + (img.complete && img.naturalWidth === 0 ? ':BROKEN' : ''));
  }
  return {labels, images, outputs};
}"""

SLIDER_STATE = """(h) => ({now: h.getAttribute('aria-valuenow'), min: h.getAttribute('aria-valuemin'),
                   max: h.getAttribute('aria-valuemax')})"""

# Geometry of the notebook's scroll container (the notebook scrolls inside its own panel).
SCROLLER = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const s = w.content.node.querySelector('.jp-WindowedPanel-outer') || w.content.node;
  const r = s.getBoundingClientRect();
  // The notebook's content ends with its last cell (the panel may add space to scroll past it).
  const cells = w.content.node.querySelectorAll('.jp-Cell');
  const last = cells.length ? cells[cells.length - 1].getBoundingClientRect().bottom : r.bottom;
  const content = Math.ceil(last - r.top + s.scrollTop + 16);
  return {top: r.top, bottom: r.bottom, client: s.clientHeight, scroll: s.scrollHeight,
          content: content, below: window.innerHeight - r.bottom};
}"""

SCROLL_TO = """(y) => {
  const w = window.jupyterapp.shell.currentWidget;
  const s = w.content.node.querySelector('.jp-WindowedPanel-outer') || w.content.node;
  s.scrollTop = y;
  return s.scrollTop;
}"""
