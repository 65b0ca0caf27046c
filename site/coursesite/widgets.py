"""Widgets on a static page: their stored read-outs, and a sentence saying where they move.

An explorer (ipywidgets) needs a Python kernel to react to its controls. A web page has none, and
rendering the saved widget state would load the widget manager from a CDN: a page that breaks on a
closed network, and controls that move nothing. So each widget output becomes plain HTML made from
the state the master saved when it ran: the settings it was run with, its read-outs (HTML labels,
images, Output widgets), and a note that says to open the notebook to use it.
"""

from __future__ import annotations

import html

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NOTE = ("This explorer needs a running Python kernel: open the notebook in Colab or JupyterLab to "
        "move its controls. Shown here: what it displayed when the notebook was run.")
_CONTROLS = {"DropdownModel", "ToggleButtonsModel", "RadioButtonsModel", "SelectModel",
             "IntSliderModel", "FloatSliderModel", "FloatLogSliderModel", "IntTextModel",
             "FloatTextModel", "BoundedIntTextModel", "BoundedFloatTextModel", "CheckboxModel"}


def _model(states: dict, ref) -> dict | None:
    if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
        ref = ref[len("IPY_MODEL_"):]
    return states.get(ref)


def _setting(state: dict) -> str | None:
    """`description = value` of a control, its value as the control showed it."""
    label = state.get("description") or ""
    if "index" in state and state.get("_options_labels"):
        index = state["index"]
        value = state["_options_labels"][index] if isinstance(index, int) else index
    elif "value" in state:
        value = state["value"]
    else:
        return None
    return f"{label} = {value}" if label else str(value)


def _output_html(output: dict) -> str:
    data = output.get("data", {})
    if "image/png" in data:
        return f'<img alt="stored output" src="data:image/png;base64,{data["image/png"].strip()}">'
    if "text/html" in data:
        text = data["text/html"]
        return text if isinstance(text, str) else "".join(text)
    text = output.get("text") or data.get("text/plain") or ""
    text = text if isinstance(text, str) else "".join(text)
    return f"<pre>{html.escape(text)}</pre>" if text else ""


def _walk(states: dict, ref, settings: list, readouts: list, seen: set) -> None:
    """Collect the settings and read-outs of the widget `ref` and its children, in display order."""
    model = _model(states, ref)
    if model is None or id(model) in seen:
        return
    seen.add(id(model))
    name, state = model.get("model_name", ""), model.get("state", {})
    if name == "HTMLModel" or name == "HTMLMathModel":
        readouts.append(state.get("value", ""))
    elif name == "LabelModel":
        readouts.append(html.escape(str(state.get("value", ""))))
    elif name == "ImageModel":
        for buffer in model.get("buffers", []):
            if buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
                kind = state.get("format", "png")
                readouts.append(f'<img alt="stored read-out" src="data:image/{kind};base64,{buffer["data"]}">')
    elif name == "OutputModel":
        readouts.extend(_output_html(o) for o in state.get("outputs", []))
    elif name in _CONTROLS:
        setting = _setting(state)
        if setting:
            settings.append(setting)
    for child in state.get("children", []):
        _walk(states, child, settings, readouts, seen)


def static_html(states: dict, model_id: str) -> str:
    """The stored face of one widget output, as HTML that needs no script."""
    settings, readouts = [], []
    _walk(states, model_id, settings, readouts, set())
    parts = ['<div class="course-widget-static">', f'<p class="course-widget-note">{html.escape(NOTE)}</p>']
    if settings:
        parts.append('<p class="course-widget-settings">Settings: '
                     + "; ".join(html.escape(s) for s in settings) + "</p>")
    parts.extend(r for r in readouts if r)
    parts.append("</div>")
    return "\n".join(parts)


def static_widgets(nb):
    """Replace every widget output of `nb` (in place) by its stored read-outs; drop the saved widget
    state so that nothing on the page asks for the widget manager. Returns `nb`."""
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            model_id = data[WIDGET_VIEW].get("model_id", "")
            output["data"] = {"text/html": static_html(states, model_id),
                              "text/plain": data.get("text/plain", "")}
    nb.metadata.pop("widgets", None)
    return nb
