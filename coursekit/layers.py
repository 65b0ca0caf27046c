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

``replace_linear(model, layer_cls, exclude, **kwargs)`` walks a model and swaps every
``nn.Linear`` whose name is not excluded for ``layer_cls.from_linear(linear, **kwargs)``.

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

from . import packing, quant

__all__ = ["W8A16Linear", "PackedLinear", "W4A16Linear", "W2A16Linear", "FakeQuantLinear",
           "replace_linear", "linear_names", "meta_tensors"]

DEFAULT_GROUP_SIZE = 64


# --------------------------------------------------------------------------- argument checks
def _check_linear(linear) -> nn.Linear:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    return linear


def _check_features(in_features, out_features) -> None:
    for name, v in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_group_size(group_size, in_features) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if in_features % group_size:
        fits = [d for d in range(2, min(in_features, 512) + 1) if in_features % d == 0][:8]
        raise ValueError(f"group_size ({group_size}) must divide in_features ({in_features}): each group "
                         f"holds group_size consecutive input weights of one row; sizes that fit: {fits}")
    return group_size


def _bias_or_none(linear: nn.Linear):
    return None if linear.bias is None else linear.bias.detach()


# --------------------------------------------------------------------------- W8A16
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
        _check_linear(linear)
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    dtype=w.dtype, device=w.device)
        if w.is_meta:
            return layer
        q = quant.quantize(w, bits=8, symmetric=True, granularity="per_channel", axis=0)
        layer.int8_weight.copy_(q.data)
        layer.scales.copy_(q.scale.reshape(-1))
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
      scales         (out_features, in_features // group_size) in the activation dtype
      zero_points    (out_features, in_features // group_size) int8, on the signed code scale
      bias           (out_features,) or None

    weight[o, g*group_size + j] = scales[o, g] * (signed_code - zero_points[o, g]).
    """

    SUPPORTED_BITS = (2, 4)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 4,
                 group_size: int = DEFAULT_GROUP_SIZE, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        _check_features(in_features, out_features)
        if isinstance(bits, bool) or bits not in self.SUPPORTED_BITS:
            raise ValueError(f"bits must be one of {self.SUPPORTED_BITS}, got {bits!r}")
        _check_group_size(group_size, in_features)
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size = bits, group_size
        n_groups = in_features // group_size
        n_bytes = -(-out_features * in_features * bits // 8)      # ceil division
        self.register_buffer("packed_weight", torch.zeros(n_bytes, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, n_groups, dtype=dtype, device=device))
        self.register_buffer("zero_points",
                             torch.zeros(out_features, n_groups, dtype=torch.int8, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int | None = None,
                    group_size: int = DEFAULT_GROUP_SIZE, clipping: str = "minmax") -> "PackedLinear":
        """Quantize an ``nn.Linear`` (a ``FakeQuantLinear`` too). A meta Linear gives an empty layer.

        ``clipping="mse"`` picks each group's range by searching for the lowest error instead of
        using its min and max (see ``coursekit.quant.quantize``): the "refine" step at low bits.
        """
        _check_linear(linear)
        bits = cls._default_bits() if bits is None else bits
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, bits=bits,
                    group_size=group_size, dtype=w.dtype, device=w.device)
        if w.is_meta:
            return layer
        q = quant.quantize(w, bits=bits, symmetric=False, granularity="per_group", group_size=group_size,
                           clipping=clipping)
        layer.packed_weight.copy_(packing.pack(packing.to_unsigned(q.data, bits), bits))
        layer.scales.copy_(q.scale)
        layer.zero_points.copy_(q.zero_point)
        if linear.bias is not None:
            layer.bias.copy_(_bias_or_none(linear))
        return layer

    @classmethod
    def _default_bits(cls) -> int:      # W2A16Linear overrides it
        return 4

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Unpack and dequantize the whole weight: (out_features, in_features)."""
        dtype = self.scales.dtype if dtype is None else dtype
        n_groups = self.in_features // self.group_size
        codes = packing.unpack(self.packed_weight, self.bits, self.out_features * self.in_features)
        codes = codes.view(self.out_features, n_groups, self.group_size).to(dtype)
        # unsigned code u = signed + 2^(b-1), so signed - zero_point = u - (zero_point + 2^(b-1)).
        # Both are small integers, exact in any float dtype; only the product with the scale rounds.
        offset = (self.zero_points.to(dtype) + 2 ** (self.bits - 1)).unsqueeze(-1)
        w = codes.sub_(offset).mul_(self.scales.to(dtype).unsqueeze(-1))   # in place: one temporary
        return w.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}, group_size={self.group_size}")


class W4A16Linear(PackedLinear):
    """``PackedLinear`` with 4-bit weights: two codes per byte."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 group_size: int = DEFAULT_GROUP_SIZE, dtype: torch.dtype = torch.float32, device=None,
                 bits: int = 4):
        if bits != 4:
            raise ValueError(f"W4A16Linear stores 4-bit weights; use PackedLinear for bits={bits!r}")
        super().__init__(in_features, out_features, bias, 4, group_size, dtype, device)


class W2A16Linear(PackedLinear):
    """``PackedLinear`` with 2-bit weights: four codes per byte."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 group_size: int = DEFAULT_GROUP_SIZE, dtype: torch.dtype = torch.float32, device=None,
                 bits: int = 2):
        if bits != 2:
            raise ValueError(f"W2A16Linear stores 2-bit weights; use PackedLinear for bits={bits!r}")
        super().__init__(in_features, out_features, bias, 2, group_size, dtype, device)

    @classmethod
    def _default_bits(cls) -> int:
        return 2


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
        quant._check_bits(bits)
        if granularity != "per_group":
            group_size = None
        else:
            _check_group_size(group_size, in_features)
        quant.Blocking.make((out_features, in_features), granularity, axis, group_size)  # validates
        self.bits, self.symmetric, self.granularity = bits, symmetric, granularity
        self.axis, self.group_size = axis, group_size

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, symmetric: bool = False,
                    granularity: str = "per_group", axis: int = 0,
                    group_size: int | None = DEFAULT_GROUP_SIZE) -> "FakeQuantLinear":
        """Wrap an ``nn.Linear``: the new layer *shares* its weight and bias parameters."""
        _check_linear(linear)
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
        raise TypeError(f"exclude must be a str or a sequence of non-empty str, got {exclude!r}")
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    patterns = _as_patterns(exclude)
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not (layer_cls is not None and isinstance(m, layer_cls))
            and not _excluded(name, patterns)]


def replace_linear(model: nn.Module, layer_cls=W8A16Linear, exclude=("lm_head",), **kwargs) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of ``model`` by ``layer_cls.from_linear(linear, **kwargs)``.

    ``exclude``: names (or one name) to keep as they are. A pattern matches a module when its
    dotted components appear consecutively in the module's qualified name (see ``linear_names``):
    "lm_head" keeps the output head, "layers.0" a whole block, "down_proj" every down projection.
    Layers that already are ``layer_cls`` are left alone. Returns the model; when ``model`` is
    itself an ``nn.Linear``, returns the new layer (there is no parent to put it in).
    """
    if not isinstance(layer_cls, type) or not hasattr(layer_cls, "from_linear"):
        raise TypeError(f"layer_cls must be a layer class with a from_linear classmethod, got {layer_cls!r}")
    names = linear_names(model, exclude, layer_cls)
    for name in names:
        if name == "":
            return layer_cls.from_linear(model, **kwargs)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, layer_cls.from_linear(getattr(parent, child), **kwargs))
    return model


def meta_tensors(model: nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (nothing should be, after loading)."""
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return [n for n, t in named if t is not None and t.is_meta]
