"""Quantized linear layers, and a function that swaps them into a model.

Three layers, one idea each:

* ``W8A16Linear``   – int8 weights (one symmetric scale per output channel), activations stay in
  their 16/32-bit dtype. The forward pass dequantizes on the fly:
  ``y = (x @ int8_weight.T) * scales + bias``. This works because the scale of output row ``o``
  multiplies every term of ``y[..., o]``, so it can be applied after the matmul.
* ``PackedLinear``  – 4-bit (``W4A16Linear``) or 2-bit (``W2A16Linear``) weights, quantized per
  group of ``group_size`` consecutive input weights, **asymmetric** (a scale and a zero point per
  group: at 2 and 4 bits a symmetric grid wastes too much of its few levels on values the weights
  never take). Codes are shifted to unsigned and packed several to a byte with
  ``coursekit.packing.pack``; the forward pass unpacks, dequantizes and calls ``F.linear``.
* ``FakeQuantLinear`` – an ``nn.Linear`` whose forward uses ``coursekit.quant.fake_quantize`` on
  its float weight (straight-through gradient), for quantization-aware training. Because it *is*
  an ``nn.Linear``, ``PackedLinear.from_linear`` / ``W8A16Linear.from_linear`` turn a trained one
  into a real quantized layer with the very grid it was trained on.

``PackedLinear.from_codes`` packs signed codes quantized anywhere: ``from_linear`` quantizes a weight
and hands it the codes, and so do ``FakeQuantLinear.to_packed`` and ``coursekit.qat`` after training.

``replace_linear(model, layer_cls, exclude, **kwargs)`` walks a model and swaps every
``nn.Linear`` whose name is not excluded for ``layer_cls.from_linear(linear, **kwargs)``; the walk
itself is ``replace_modules(model, names, make)``.

Quantized weights are *buffers*, not parameters: an integer tensor cannot require a gradient, and
nothing here is trained. Buffers still travel with ``.to(device)`` and live in ``state_dict()``.

Every layer has a constructor that only allocates (no quantization), so a quantized model can be
built on the meta device and filled with ``load_state_dict(sd, assign=True)`` without ever
materializing fp32 weights; ``from_linear`` of a meta ``nn.Linear`` takes that path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, packing, quant

__all__ = ["int8_per_channel", "W8A16Linear", "PackedLinear", "W4A16Linear", "W2A16Linear", "FakeQuantLinear",
           "replace_linear", "replace_modules", "linear_names", "meta_tensors"]

DEFAULT_GROUP_SIZE = 64


# --------------------------------------------------------------------------- argument checks
def _check_features(in_features, out_features) -> None:
    checks.check_int(in_features, "in_features", low=1)
    checks.check_int(out_features, "out_features", low=1)


def _bias_or_none(linear: nn.Linear):
    return None if linear.bias is None else linear.bias.detach()


# --------------------------------------------------------------------------- W8A16
def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of a weight (out, in) and one float32 scale per output channel (out,).

    The recipe of W8A16Linear, and of coursekit.kernels.Int8WeightLinear, which stores the same codes.
    """
    q = quant.quantize(weight, bits=8, symmetric=True, granularity="per_channel", axis=0)
    return q.data, q.scale.reshape(-1)


class W8A16Linear(nn.Module):
    """A linear layer with int8 weights and 16/32-bit activations.

    Buffers:
      int8_weight  (out_features, in_features) int8 codes, symmetric, in [-127, 127]
      scales       (out_features,)  one scale per output channel, in the activation dtype
      bias         (out_features,)  or None, in the activation dtype

    The weight is ``int8_weight * scales[:, None]``; ``forward`` never builds it: it multiplies
    by the int8 codes (cast to the input's dtype) and scales the output columns.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        _check_features(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("int8_weight",
                             torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A16Linear":
        """Quantize an ``nn.Linear`` (per output channel, symmetric int8). A meta Linear gives an empty layer."""
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    dtype=w.dtype, device=w.device)
        if w.is_meta:
            return layer
        codes, scales = int8_per_channel(w)
        layer.int8_weight.copy_(codes)
        layer.scales.copy_(scales)
        if linear.bias is not None:
            layer.bias.copy_(_bias_or_none(linear))
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the layer stands for, ``int8_weight * scales`` (out_features, in_features)."""
        return self.int8_weight.to(self.scales.dtype) * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.int8_weight.to(x.dtype)) * self.scales.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.scales.dtype}")


# --------------------------------------------------------------------------- packed 4-bit / 2-bit
class PackedLinear(nn.Module):
    """A linear layer whose weights are ``bits``-bit codes (2 or 4), packed ``8 // bits`` per byte.

    Quantization is asymmetric, per group of ``group_size`` consecutive weights along the input
    dimension (``coursekit.quant.quantize(..., granularity="per_group")``). Buffers:

      packed_weight  (out_features * in_features * bits / 8,) uint8, row-major, first code in
                     the lowest bits; unsigned codes = signed codes + 2^(bits-1)
      scales         (out_features, n_groups) in the activation dtype
      zero_points    (out_features, n_groups) int8, on the signed code scale
      bias           (out_features,) or None

    weight[o, g*group_size + j] = scales[o, g] * (signed_code - zero_points[o, g]), with
    n_groups = ceil(in_features / group_size): a group size that does not divide in_features
    leaves a shorter last group in each row.
    """

    #: The widths this class stores; a subclass with one width (W4A16Linear) lists only it.
    #: ``bits=None`` means the largest.
    SUPPORTED_BITS = (2, 4)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int | None = None,
                 group_size: int = DEFAULT_GROUP_SIZE, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        _check_features(in_features, out_features)
        self.bits, self.group_size = self._bits_or_default(bits), checks.check_int(group_size, "group_size", low=1)
        self.in_features, self.out_features = in_features, out_features
        n_groups = self._blocking().groups_per_row
        n_bytes = -(-out_features * in_features * self.bits // 8)      # ceil division
        self.register_buffer("packed_weight", torch.zeros(n_bytes, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, n_groups, dtype=dtype, device=device))
        self.register_buffer("zero_points",
                             torch.zeros(out_features, n_groups, dtype=torch.int8, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    def _blocking(self) -> quant.Blocking:
        """The weight's groups, as ``quant.quantize`` cuts them (a short last group padded)."""
        return quant.Blocking((self.out_features, self.in_features), "per_group", 0, self.group_size)

    @classmethod
    def _bits_or_default(cls, bits) -> int:
        """bits: one of SUPPORTED_BITS, or None for the largest of them."""
        if bits is None:
            return max(cls.SUPPORTED_BITS)
        return checks.check_choice(bits, "bits", cls.SUPPORTED_BITS)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                   bits: int | None = None, group_size: int | None = None, bias: torch.Tensor | None = None,
                   dtype: torch.dtype | None = None) -> "PackedLinear":
        """A layer holding given signed codes ``(out_features, in_features)``, packed.

        ``scale`` (floating point) and ``zero_point`` (integer values, in any dtype) have one entry
        per group of ``group_size`` inputs in each row: shape ``(out_features, n_groups)``, or
        ``n_groups`` entries shared by every row (a per-tensor grid). ``group_size=None`` is one group per row
        (a per-channel or per-tensor grid). ``dtype`` is the activation dtype (default: scale's).
        Codes from anywhere become a layer this way: ``from_linear`` quantizes a weight and calls it,
        and so does the conversion after quantization-aware training.
        """
        checks.check_tensor(codes, "codes", ndim=2)
        if codes.is_floating_point():
            checks.fail("codes", "an integer tensor of signed codes", f"dtype {codes.dtype}")
        checks.check_tensor(scale, "scale", floating=True)
        checks.check_tensor(zero_point, "zero_point")
        if bias is not None:
            checks.check_tensor(bias, "bias", floating=True, ndim=1)
        out_f, in_f = codes.shape
        group_size = in_f if group_size is None else group_size
        layer = cls(in_f, out_f, bias=bias is not None, bits=bits, group_size=group_size,
                    dtype=scale.dtype if dtype is None else dtype, device=codes.device)
        n_groups = layer.scales.shape[1]
        for name, t in (("scale", scale), ("zero_point", zero_point)):
            if t.numel() not in (n_groups, out_f * n_groups):
                checks.fail(name, f"{out_f} x {n_groups} entries (one per group of each row), or {n_groups}",
                            f"shape {tuple(t.shape)}")
        layer.packed_weight.copy_(packing.pack(packing.to_unsigned(codes, layer.bits), layer.bits))
        # (1, n_groups) entries repeat down the rows: a per-tensor grid stored per row
        layer.scales.copy_(scale.detach().reshape(-1, n_groups).expand(out_f, n_groups))
        layer.zero_points.copy_(zero_point.detach().reshape(-1, n_groups).expand(out_f, n_groups))
        if bias is not None:
            layer.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int | None = None,
                    group_size: int = DEFAULT_GROUP_SIZE, clipping: str = "minmax") -> "PackedLinear":
        """Quantize an ``nn.Linear`` (a ``FakeQuantLinear`` too). A meta Linear gives an empty layer.

        ``clipping="mse"`` picks each group's range by searching for the lowest error instead of
        using its min and max (see ``coursekit.quant.quantize``): the "refine" step at low bits.
        """
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        w = linear.weight.detach()
        if w.is_meta:
            return cls(linear.in_features, linear.out_features, bias=linear.bias is not None, bits=bits,
                       group_size=group_size, dtype=w.dtype, device=w.device)
        bits = cls._bits_or_default(bits)
        q = quant.quantize(w, bits=bits, symmetric=False, granularity="per_group", group_size=group_size,
                           clipping=clipping)
        return cls.from_codes(q.data, q.scale, q.zero_point, bits, group_size, _bias_or_none(linear), w.dtype)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Unpack and dequantize the whole weight: (out_features, in_features)."""
        dtype = self.scales.dtype if dtype is None else dtype
        blocking = self._blocking()
        codes = packing.unpack(self.packed_weight, self.bits, self.out_features * self.in_features)
        codes = blocking.to_blocks(codes.view(self.out_features, self.in_features).to(dtype))
        # unsigned code u = signed + 2^(b-1), so signed - zero_point = u - (zero_point + 2^(b-1)).
        # Both are small integers, exact in any float dtype; only the product with the scale rounds.
        offset = (self.zero_points.to(dtype) + 2 ** (self.bits - 1)).reshape(-1, 1)
        w = codes.sub_(offset).mul_(self.scales.to(dtype).reshape(-1, 1))   # in place: one temporary
        return blocking.from_blocks(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}, group_size={self.group_size}")


class W4A16Linear(PackedLinear):
    """``PackedLinear`` with 4-bit weights: two codes per byte."""
    SUPPORTED_BITS = (4,)


class W2A16Linear(PackedLinear):
    """``PackedLinear`` with 2-bit weights: four codes per byte."""
    SUPPORTED_BITS = (2,)


# --------------------------------------------------------------------------- fake quantization (QAT)
class FakeQuantLinear(nn.Linear):
    """An ``nn.Linear`` that trains in float but computes with its weight snapped to a grid.

    ``forward`` uses ``fake_quantize(self.weight, bits, symmetric, granularity, axis, group_size)``:
    the values a quantized layer would use, with a straight-through gradient so the float weight
    keeps learning. The defaults (4-bit, asymmetric, per group of 64) match ``W4A16Linear``;
    ``bits=8, symmetric=True, granularity="per_channel"`` matches ``W8A16Linear``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 4,
                 symmetric: bool = False, granularity: str = "per_group", axis: int = 0,
                 group_size: int | None = DEFAULT_GROUP_SIZE, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        checks.check_int(bits, "bits", quant.MIN_BITS, quant.MAX_BITS)
        checks.check_instance(symmetric, "symmetric", bool, "True or False")
        if granularity != "per_group":
            group_size = None
        else:
            checks.check_int(group_size, "group_size", low=1)
        quant.Blocking.make((out_features, in_features), granularity, axis, group_size)  # checks the rest
        self.bits, self.symmetric, self.granularity = bits, symmetric, granularity
        self.axis, self.group_size = axis, group_size

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, symmetric: bool = False,
                    granularity: str = "per_group", axis: int = 0,
                    group_size: int | None = DEFAULT_GROUP_SIZE) -> "FakeQuantLinear":
        """Wrap an ``nn.Linear``: the new layer *shares* its weight and bias parameters."""
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, bits=bits,
                    symmetric=symmetric, granularity=granularity, axis=axis, group_size=group_size,
                    device="meta", dtype=w.dtype)        # allocate nothing: we take linear's tensors
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the forward pass sees it (on the grid; gradients pass straight through)."""
        return quant.fake_quantize(self.weight, self.bits, self.symmetric, self.granularity,
                                   self.axis, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    @torch.no_grad()
    def to_packed(self) -> PackedLinear:
        """The real quantized layer, on the very grid this one computes with (2 or 4 bits).

        Per-tensor and per-channel grids are stored as one group per row (the per-tensor scale
        repeated down the rows); per-channel grids must run along the output dimension (axis 0).
        """
        if self.granularity == "per_channel" and self.axis % 2 != 0:
            checks.fail("axis", "0 for a packed layer (one grid per output row)", self.axis)
        q = quant.quantize(self.weight.detach(), self.bits, self.symmetric, self.granularity, self.axis,
                           self.group_size)
        return PackedLinear.from_codes(q.data, q.scale, q.zero_point, self.bits, self.group_size,
                                       _bias_or_none(self), self.weight.dtype)

    def extra_repr(self) -> str:
        mode = "symmetric" if self.symmetric else "asymmetric"
        extra = f", group_size={self.group_size}" if self.granularity == "per_group" else ""
        return f"{super().extra_repr()}, bits={self.bits}, {mode}, {self.granularity}{extra}"


# --------------------------------------------------------------------------- swapping layers in a model
def _as_patterns(exclude) -> tuple[str, ...]:
    if exclude is None:
        return ()
    if isinstance(exclude, str):
        return (exclude,)
    patterns = tuple(exclude)
    if not all(isinstance(p, str) and p for p in patterns):
        checks.fail("exclude", "a str or a sequence of non-empty str", repr(exclude), TypeError)
    return patterns


def _excluded(name: str, patterns) -> bool:
    """A pattern matches when its dotted components appear, consecutively, in the name.

    "lm_head" matches "lm_head" and "model.lm_head"; "down_proj" matches every down_proj;
    "layers.0" matches everything inside the first decoder layer; "head" does not match "lm_head".
    """
    dotted = f".{name}."
    return any(f".{p.strip('.')}." in dotted for p in patterns)


def linear_names(model: nn.Module, exclude=("lm_head",), layer_cls=None) -> list[str]:
    """Qualified names of the ``nn.Linear`` modules ``replace_linear`` would replace, in order."""
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    patterns = _as_patterns(exclude)
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not (layer_cls is not None and isinstance(m, layer_cls))
            and not _excluded(name, patterns)]


def replace_modules(model: nn.Module, names, make) -> nn.Module:
    """Replace, in place, each module of ``model`` named in ``names`` by ``make(module)``.

    The walk behind ``replace_linear`` (and ``coursekit.qat.to_real_quant``): a qualified name
    "model.layers.0.mlp.up_proj" is an attribute ("up_proj") of its parent module. Returns the
    model, or the new module when a name is "" (``model`` itself: there is no parent to put it in).
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    for name in names:
        if name == "":
            return make(model)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, make(getattr(parent, child)))
    return model


def replace_linear(model: nn.Module, layer_cls=W8A16Linear, exclude=("lm_head",), **kwargs) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of ``model`` by ``layer_cls.from_linear(linear, **kwargs)``.

    ``exclude``: names (or one name) to keep as they are. A pattern matches a module when its
    dotted components appear consecutively in the module's qualified name (see ``linear_names``):
    "lm_head" keeps the output head, "layers.0" a whole block, "down_proj" every down projection.
    Layers that already are ``layer_cls`` are left alone. Returns the model; when ``model`` is
    itself an ``nn.Linear``, returns the new layer (there is no parent to put it in).
    """
    if not (isinstance(layer_cls, type) and hasattr(layer_cls, "from_linear")):
        checks.fail("layer_cls", "a layer class with a from_linear classmethod", repr(layer_cls), TypeError)
    names = linear_names(model, exclude, layer_cls)
    return replace_modules(model, names, lambda linear: layer_cls.from_linear(linear, **kwargs))


def meta_tensors(model: nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (nothing should be, after loading)."""
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return [n for n, t in named if t is not None and t.is_meta]
