"""Interactive explorers for the notebooks, built with ipywidgets.

Each explorer is thin on purpose: the numbers it shows come from plain functions elsewhere in
coursekit (``coursekit.dtypes`` for bits, ``coursekit.quant`` for quantization), so what a learner
sees in a widget is exactly what the library computes in code cells, and tests can check the
logic without a browser. An explorer is a small class that exposes its widgets as attributes
(tests drive them headless by setting ``.value``) and displays itself when it is the last
expression of a cell.

Sections:
  * Bit explorer -- flip the bits of an int8 / float8 / float16 / bfloat16 / float32 number.
  * Quantization explorer -- bits, mode and granularity against a histogram with the grid.
"""

from __future__ import annotations

import html
import math

import ipywidgets as widgets
import torch

from coursekit import checks
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
        dtype = checks.check_choice(_dt.as_dtype(dtype), "dtype", _EXPLORER_DTYPES)
        checks.check_instance(value, "value", (int, float), "a number")
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


# =============================================================================================
# Quantization explorer
# =============================================================================================
# The explorer only wires controls to coursekit.quant (the numbers) and coursekit.plots (the
# figure); `update()` is a plain method, so tests and notebooks can drive it without a browser.

import io as _io

from coursekit import plots as _plots
from coursekit import quant as _quant

__all__ += ["QuantizationExplorer", "quantization_explorer", "outlier_weight"]


def outlier_weight(rows: int = 16, cols: int = 64, outlier_rows=(3, 11), outlier_scale: float = 8.0,
                   seed: int = 0) -> torch.Tensor:
    """A weight-like matrix: small Gaussian values, with a few rows `outlier_scale` times larger.

    Real weight matrices often have a handful of channels with a much wider range than the rest;
    one shared scale must stretch to cover them, which wastes levels on every other row.
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    for r in outlier_rows:
        w[r] *= outlier_scale
    return w


def _group_sizes(last_dim: int) -> list[int]:
    """Group sizes that divide the last dimension (smallest first), so every choice is valid."""
    sizes = [d for d in range(2, last_dim + 1) if last_dim % d == 0]
    return sizes or [last_dim]


_REDRAW_FAILED = "The explorer could not redraw:"


class QuantizationExplorer:
    """Pick bits, mode and granularity; see the histogram, the quantization grid and the MSE.

    Controls (tests and notebooks set their ``.value``): ``bits_slider`` (2..8),
    ``mode_buttons`` ("asymmetric" / "symmetric"), ``granularity_buttons`` (per_tensor /
    per_channel over rows / per_group), ``group_size_dropdown`` (only enabled for per_group).
    Read-outs: ``mse_label`` (HTML), ``image`` (the PNG of ``figure``).
    ``update()`` recomputes everything from the controls; ``state()`` returns the current
    configuration and its error as a dict.
    """

    def __init__(self, x: torch.Tensor | None = None, bits: int = 4, symmetric: bool = False,
                 granularity: str = "per_tensor", group_size: int | None = None):
        x = outlier_weight() if x is None else x
        checks.check_tensor(x, "x", floating=True)
        if x.dim() == 0 or x.numel() == 0:
            checks.fail("x", "a non-empty tensor with at least one dimension", f"shape {tuple(x.shape)}")
        checks.check_int(bits, "bits", _quant.MIN_BITS, _quant.MAX_BITS)
        checks.check_choice(granularity, "granularity", _quant.GRANULARITIES)
        self.x = x.detach().float().cpu()       # finite values: checked by quantize in update()
        sizes = _group_sizes(self.x.shape[-1])
        if group_size is None:
            group_size = min(sizes, key=lambda s: abs(s - 16))  # a typical small group
        checks.check_choice(group_size, "group_size", sizes)     # the divisors of the last dimension

        self.bits_slider = widgets.IntSlider(value=bits, min=_quant.MIN_BITS, max=_quant.MAX_BITS,
                                             description="bits", continuous_update=False)
        self.mode_buttons = widgets.ToggleButtons(options=["asymmetric", "symmetric"],
                                                  value="symmetric" if symmetric else "asymmetric",
                                                  description="mode")
        self.granularity_buttons = widgets.ToggleButtons(options=list(_quant.GRANULARITIES),
                                                         value=granularity, description="granularity")
        self.group_size_dropdown = widgets.Dropdown(options=sizes, value=group_size,
                                                    description="group size")
        self.mse_label = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.figure = None
        self.widget = widgets.VBox([
            widgets.HBox([self.bits_slider, self.group_size_dropdown]),
            self.mode_buttons, self.granularity_buttons, self.mse_label, self.image])
        for control in (self.bits_slider, self.mode_buttons, self.granularity_buttons,
                        self.group_size_dropdown):
            control.observe(self._on_change, names="value")
        self.update()

    # -- state --------------------------------------------------------------------------------
    def config(self) -> dict:
        """The arguments of ``coursekit.quant.quantize`` that the controls describe."""
        granularity = self.granularity_buttons.value
        return {"bits": self.bits_slider.value, "symmetric": self.mode_buttons.value == "symmetric",
                "granularity": granularity,
                "group_size": self.group_size_dropdown.value if granularity == "per_group" else None}

    def state(self) -> dict:
        """The current configuration plus its MSE and storage cost (bits per value)."""
        return {**self.config(), "mse": self.mse, "bits_per_value": self.qtensor.bits_per_value}

    def update(self) -> dict:
        """Quantize x with the current controls and refresh the label and the figure."""
        cfg = self.config()
        self.group_size_dropdown.disabled = cfg["granularity"] != "per_group"
        self.qtensor = _quant.quantize(self.x, **cfg)
        self.mse = _quant.quantization_error(self.x, self.qtensor)
        self.figure = _plots.plot_histogram_with_grid(self.x, self.qtensor)
        buf = _io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=72)
        self.image.value = buf.getvalue()
        self.mse_label.value = (
            f"<div style='font-family:monospace'>{html.escape(self._describe(cfg))}: "
            f"<b>MSE = {self.mse:.4g}</b>, {self.qtensor.scale.numel()} scale(s), "
            f"{self.qtensor.bits_per_value:.3g} bits per value with scales</div>")
        return self.state()

    @staticmethod
    def _describe(cfg: dict) -> str:
        mode = "symmetric" if cfg["symmetric"] else "asymmetric"
        extra = f" (group size {cfg['group_size']})" if cfg["granularity"] == "per_group" else ""
        return f"{cfg['bits']}-bit {mode}, {cfg['granularity']}{extra}"

    def _on_change(self, change) -> None:
        # An error in a widget callback goes to JupyterLab's log console, where nobody looks: the
        # explorer would just stop responding. Say it in the read-out instead.
        try:
            self.update()
        except Exception as e:
            self.mse_label.value = (f"<div style='color:#c0392b'>{_REDRAW_FAILED} "
                                    f"{html.escape(type(e).__name__)}: {html.escape(str(e).strip())}</div>")

    # -- display ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"QuantizationExplorer({self._describe(self.config())}: MSE = {self.mse:.4g})"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)  # the default repr would spell out the PNG's bytes
        return bundle


def quantization_explorer(x: torch.Tensor | None = None) -> QuantizationExplorer:
    """An interactive view of quantizing ``x`` (default: ``outlier_weight()``); evaluate it in a cell."""
    return QuantizationExplorer(x)
