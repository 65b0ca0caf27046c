"""Interactive explorers for the notebooks, built with ipywidgets.

Each explorer is thin on purpose: the numbers it shows come from plain functions elsewhere in
coursekit (``coursekit.dtypes`` for bits, ``coursekit.quant`` for quantization), so what a learner
sees in a widget is exactly what the library computes in code cells, and tests can check the
logic without a browser. An explorer is a small class that exposes its widgets as attributes
(tests drive them headless by setting ``.value``) and displays itself when it is the last
expression of a cell.

Sections:
  * Bit explorer -- flip the bits of an int8 / float8 / float16 / bfloat16 / float32 number.
"""

from __future__ import annotations

import html
import math

import ipywidgets as widgets
import torch

from coursekit import dtypes as _dt

__all__ = ["BitExplorer", "bit_explorer"]


# =============================================================================================
# Bit explorer
# =============================================================================================

# Button colour per bit role (ipywidgets' built-in styles, so no custom CSS is needed).
_ROLE_STYLE = {"sign": "danger", "exponent": "success", "mantissa": "info", "value": "warning"}
# The same roles as text colours for the bit string in the read-out.
_ROLE_COLOR = {"sign": "#c0392b", "exponent": "#27ae60", "mantissa": "#2980b9", "value": "#d68910"}

# Smallest first, so the dropdown reads as a progression; float8 only where torch has it.
_EXPLORER_DTYPES = (
    (torch.int8,)
    + tuple(d for d in _dt.FLOAT_DTYPES if torch.finfo(d).bits == 8)
    + (torch.float16, torch.bfloat16, torch.float32)
)


def _nearest_in_dtype(value, dtype: torch.dtype):
    """The value a bit explorer in ``dtype`` starts from when it is given ``value``.

    Floats are rounded by torch; for integers we round to nearest and clamp to the range (torch's
    own cast truncates and wraps around, which would surprise a learner switching dtypes).
    """
    if dtype.is_floating_point:
        return float(value)
    low, high = _dt.int_range(torch.iinfo(dtype).bits, signed=dtype.is_signed)
    if math.isnan(value):
        return 0
    return int(min(max(round(value) if math.isfinite(value) else value, low), high))


def _readout_html(bitstring: str, dtype: torch.dtype) -> str:
    """The explorer's read-out: coloured bit string, decoded value and the formula behind it."""
    decoding = _dt.decode(bitstring, dtype)
    roles = _dt.bit_roles(dtype)
    colored = "".join(f'<span style="color:{_ROLE_COLOR[r]}">{b}</span>' for b, r in zip(bitstring, roles))
    if dtype.is_floating_point:
        detail = f"{decoding.kind}, exponent bias {decoding.bias}"
    else:
        n = len(bitstring)
        detail = (f"two's complement: the sign bit is worth -{2 ** (n - 1)}" if dtype.is_signed
                  else "unsigned: every bit adds its place value")
    return (
        f"<div style='font-family:monospace'>"
        f"<b>{html.escape(str(dtype).removeprefix('torch.'))}</b> bits: {colored}<br>"
        f"value = <b>{decoding.value!r}</b><br>"
        f"= {html.escape(decoding.formula)}<br>"
        f"<small>{html.escape(detail)}</small></div>"
    )


class BitExplorer:
    """Flip the bits of a number and watch its value change.

    One toggle button per bit (red = sign, green = exponent, blue = mantissa, orange = integer
    value bits), a dtype dropdown, a box to type a value, and a read-out with the bit string,
    the value and its formula. Everything shown is computed by ``coursekit.dtypes``.

    Attributes used by tests and notebooks: ``.widget`` (the container), ``.toggles`` (one
    ToggleButton per bit, most significant first), ``.value_label`` (HTML read-out),
    ``.dtype_dropdown``, ``.value_input``; properties ``.bits``, ``.value``, ``.dtype``.
    """

    def __init__(self, dtype=torch.float16, value=1 / 3):
        dtype = _dt.as_dtype(dtype)
        if dtype not in _EXPLORER_DTYPES:
            names = ", ".join(str(d).removeprefix("torch.") for d in _EXPLORER_DTYPES)
            raise ValueError(f"dtype: expected one of {names}, got {dtype}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"value: expected a number, got {type(value).__name__}")
        self._busy = False  # guards against widget callbacks triggering each other
        self.dtype_dropdown = widgets.Dropdown(
            options=[(str(d).removeprefix("torch."), d) for d in _EXPLORER_DTYPES],
            value=dtype, description="dtype")
        self.value_input = widgets.FloatText(value=float(value), description="value",
                                             continuous_update=False)
        self.value_label = widgets.HTML()
        self.bits_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.toggles: list[widgets.ToggleButton] = []
        self.widget = widgets.VBox([
            widgets.HBox([self.dtype_dropdown, self.value_input]), self.bits_box, self.value_label])
        self.dtype_dropdown.observe(self._on_dtype, names="value")
        self.value_input.observe(self._on_value_input, names="value")
        self._build_toggles(_dt.value_to_bits(_nearest_in_dtype(value, dtype), dtype))

    # -- state --------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.dtype_dropdown.value

    @property
    def bits(self) -> str:
        """The current bit string, most significant bit first."""
        return "".join("1" if t.value else "0" for t in self.toggles)

    @property
    def value(self):
        """The number the current bits encode in the current dtype."""
        return _dt.decode(self.bits, self.dtype).value

    def set_bits(self, bitstring: str) -> None:
        """Set all bits at once (e.g. ``'0111110000000000'`` is +inf in float16)."""
        _dt.decode(bitstring, self.dtype)  # validates length and characters
        self._busy = True
        try:
            for toggle, bit in zip(self.toggles, bitstring):
                toggle.value = bit == "1"
        finally:
            self._busy = False
        self._refresh()

    def set_value(self, value) -> None:
        """Show the bits of ``value`` in the current dtype (rounded / clamped to fit)."""
        self.set_bits(_dt.value_to_bits(_nearest_in_dtype(value, self.dtype), self.dtype))

    # -- widget plumbing ------------------------------------------------------------------------
    def _build_toggles(self, bitstring: str) -> None:
        roles = _dt.bit_roles(self.dtype)
        n = len(bitstring)
        self.toggles = []
        for i, (bit, role) in enumerate(zip(bitstring, roles)):
            toggle = widgets.ToggleButton(
                value=bit == "1", description=bit, button_style=_ROLE_STYLE[role],
                tooltip=f"{role} bit (bit {n - 1 - i})", layout=widgets.Layout(width="32px"))
            toggle.observe(self._on_toggle, names="value")
            self.toggles.append(toggle)
        self.bits_box.children = tuple(self.toggles)
        self._refresh()

    def _refresh(self) -> None:
        for toggle in self.toggles:
            toggle.description = "1" if toggle.value else "0"
        self.value_label.value = _readout_html(self.bits, self.dtype)
        value = self.value
        if math.isfinite(value):  # inf / nan cannot travel to the browser as JSON numbers
            self._busy = True
            try:
                self.value_input.value = float(value)
            finally:
                self._busy = False

    def _on_toggle(self, change) -> None:
        if not self._busy:
            self._refresh()

    def _on_value_input(self, change) -> None:
        if not self._busy:
            self.set_value(change["new"])

    def _on_dtype(self, change) -> None:
        # The bits of the old dtype mean nothing in the new one: re-encode the current value.
        old_value = _dt.decode(self.bits, change["old"]).value
        self._build_toggles(_dt.value_to_bits(_nearest_in_dtype(old_value, change["new"]), change["new"]))

    # -- display ------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def bit_explorer(dtype=torch.float16, value=1 / 3) -> BitExplorer:
    """An interactive view of the bits of ``value`` in ``dtype``; evaluate it in a cell to show it."""
    return BitExplorer(dtype=dtype, value=value)
