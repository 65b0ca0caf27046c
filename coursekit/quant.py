"""Linear quantization: one mechanism for every granularity.

A real value r is stored as an integer code q with r ≈ scale * (q - zero_point). This file is the
lesson of notebook 03, in its order:

    qrange(bits)                               -> qmin, qmax    the codes a b-bit integer holds
    linear_quantize(x, scale, zp, bits)        -> codes         q = clamp(round(x / s) + z, qmin, qmax)
    linear_dequantize(codes, scale, zp)        -> values        r = s * (q - z)
    qparams_from_minmax(x_min, x_max, bits)    -> scale, zp     the grid that spans [x_min, x_max]
    Blocking                                                    a granularity = a way to cut x into blocks
    choose_qparams(x, ...)                     -> scale, zp     qparams_from_minmax of every block
    QTensor, quantize(x, ...)                                   the steps, chained on the block view
    fake_quantize(x, ...)                                       quantize + dequantize; straight-through gradient

Granularity is only a way to cut a tensor into blocks, each with its own scale and zero point:

* ``per_tensor``  – one block holding everything;
* ``per_channel`` – one block per index along ``axis`` (a row of a weight when axis=0);
* ``per_group``   – blocks of ``group_size`` consecutive elements along the last dimension. When
  ``group_size`` does not divide it (SmolLM2's 576 inputs in groups of 128), the last group of
  each row is shorter, as in the reference GPTQ implementations.

We view the tensor as a matrix of shape ``(n_blocks, block_len)``, take min/max per row, quantize,
and view it back. The same few lines serve all three granularities, with no Python loop. A short
last group is padded with zeros in that view: every grid here holds 0 exactly, so the padding
changes no scale, zero point or error, and it is cut off again on the way back.

Codes are signed, in ``[-2^(b-1), 2^(b-1) - 1]`` (for 8 bits: -128..127), and live in an int8
tensor; `coursekit.packing` squeezes sub-byte codes together for storage.

Two refinements have modules of their own, so that this one stays the lesson:
`coursekit.mse_clipping` (``clipping="mse"``: a narrower range than min..max, searched per block)
and `coursekit.compiled` (large tensors run the same steps compiled by torch.compile).
Arguments are checked once, where a learner calls in (`coursekit.checks`); the steps take
``check=False`` when `quantize` calls them, because it has checked the whole tensor already.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import checks, compiled, mse_clipping

MIN_BITS, MAX_BITS = 2, 8
GRANULARITIES = ("per_tensor", "per_channel", "per_group")
CLIPPINGS = ("minmax", "mse")


def _check_values(x, name: str = "x") -> torch.Tensor:
    """x as a non-empty floating-point tensor (finiteness is checked where it costs least)."""
    checks.check_tensor(x, name, floating=True)
    if x.numel() == 0:
        checks.fail(name, "a non-empty tensor (there is nothing to quantize)", f"shape {tuple(x.shape)}")
    return x


def _check_finite(all_finite: torch.Tensor, name: str = "x") -> None:
    if not bool(all_finite):        # reads one value back from the device: the one sync per call
        checks.fail(name, "finite values (quantization needs them)", "NaN or Inf")


# --------------------------------------------------------------------------- the formulas
def qrange(bits: int, *, check: bool = True) -> tuple[int, int]:
    """The signed integer range used for codes: (-2^(b-1), 2^(b-1) - 1); bits from 2 to 8.

    ``check=False`` skips the check, for callers that made it: inside the compiled fast path a
    Python-level check on `bits` makes torch.compile treat it symbolically and halves its speed.
    """
    if check:
        bits = checks.check_int(bits, "bits", MIN_BITS, MAX_BITS)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def linear_quantize(x: torch.Tensor, scale, zero_point, bits: int = 8, *, check: bool = True) -> torch.Tensor:
    """Codes q = clamp(round(x / scale) + zero_point, qmin, qmax), as int8.

    `scale` and `zero_point` are numbers or tensors that broadcast against x (per-tensor, or one
    per channel or per block). Rounding is round-half-to-even, as torch.round does. bits: 2 to 8.
    ``check=False`` skips the argument checks, for callers that have made them.
    """
    if check:
        bits = checks.check_int(bits, "bits", MIN_BITS, MAX_BITS)
        _check_finite(torch.isfinite(_check_values(x)).all())
        scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
        if not bool(((scale > 0) & torch.isfinite(scale)).all()):
            checks.fail("scale", "positive, finite values",
                        scale.item() if scale.numel() == 1 else f"a tensor with min {scale.min().item()}")
        zero_point = torch.as_tensor(zero_point, device=x.device)
    qmin, qmax = qrange(bits, check=False)
    codes = (x.float() / scale).round_()        # round(x / s): the one full-size float temporary,
    codes.add_(zero_point).clamp_(qmin, qmax)   # so + z and the clamp work in place on it
    return codes.to(torch.int8)


def linear_dequantize(codes: torch.Tensor, scale, zero_point, dtype=torch.float32, *,
                      check: bool = True) -> torch.Tensor:
    """Values r = scale * (q - zero_point), in `dtype`. ``check=False`` skips the argument checks."""
    if check:
        checks.check_tensor(codes, "codes")
        if codes.is_floating_point():
            checks.fail("codes", "an integer tensor (the output of linear_quantize)", f"dtype {codes.dtype}")
        scale = torch.as_tensor(scale, dtype=torch.float32, device=codes.device)
        zero_point = torch.as_tensor(zero_point, device=codes.device)
    return ((codes.float() - zero_point) * scale).to(dtype)


def _as_float32(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        return torch.tensor(checks.check_number(value, name), dtype=torch.float32)
    return value.float()


def qparams_from_minmax(x_min, x_max, bits: int = 8, symmetric: bool = False, *, check: bool = True):
    """Scale and zero point of the grid that spans [x_min, x_max] (numbers, or tensors: one per block).

    Asymmetric: min maps to qmin and max to qmax: scale = (max - min) / (qmax - qmin) and the zero
    point is the code of 0, qmin - min / scale, rounded (and clipped into range).
    The range is first widened to include 0, as PyTorch's observers do: then 0 is exactly
    representable (padding, ReLU zeros) and the zero point always lies inside the code range, so
    clipping it never pushes real values off the grid.
    Symmetric: zero point 0 and scale = max|x| / qmax, so +max|x| lands on qmax.
    A range too narrow for a float32 scale (an all-zero block) would divide by 0 later: there we
    pick scale max|x| (1 if it is 0) and zero point 0.
    Returns float32 scales and int8 zero points shaped like x_min. bits: 2 to 8.
    ``check=False`` skips the argument checks (float32 tensors are then expected).
    """
    if check:
        bits = checks.check_int(bits, "bits", MIN_BITS, MAX_BITS)
        checks.check_instance(symmetric, "symmetric", bool, "True or False")
        x_min, x_max = _as_float32(x_min, "x_min"), _as_float32(x_max, "x_max")
    qmin, qmax = qrange(bits, check=False)
    x_min, x_max = torch.clamp(x_min, max=0.0), torch.clamp(x_max, min=0.0)
    absmax = torch.maximum(x_min.abs(), x_max.abs())
    if symmetric:
        scale, zero_point = absmax / qmax, torch.zeros_like(absmax)
    else:
        scale = (x_max - x_min) / (qmax - qmin)
        zero_point = torch.clamp(torch.round(qmin - x_min / scale), qmin, qmax)
    degenerate = scale < torch.finfo(torch.float32).tiny
    scale = torch.where(degenerate, torch.where(absmax > 0, absmax, torch.ones_like(absmax)), scale)
    zero_point = torch.where(degenerate, torch.zeros_like(zero_point), zero_point)
    return scale, zero_point.to(torch.int8)


# --------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Blocking:
    """How a tensor of `shape` is cut into blocks. Knows how to go to and from the block view.

    Make one with `Blocking.make`, which checks the arguments.
    """

    shape: tuple
    granularity: str = "per_tensor"
    axis: int = 0
    group_size: int | None = None

    @staticmethod
    def make(shape, granularity="per_tensor", axis=0, group_size=None) -> "Blocking":
        """A checked Blocking. granularity: one of GRANULARITIES; axis (per_channel only): an int
        from -ndim to ndim - 1; group_size (per_group only): an int >= 1 (when it does not divide
        the last dimension, each row's last group is shorter)."""
        shape = tuple(shape)
        checks.check_choice(granularity, "granularity", GRANULARITIES)
        if granularity != "per_tensor" and not shape:
            checks.fail("granularity", "'per_tensor' for a 0-D tensor (it has no channels or groups)",
                        repr(granularity))
        if granularity == "per_channel":
            axis = checks.check_int(axis, "axis", -len(shape), len(shape) - 1) % len(shape)
        else:
            axis = 0
        if granularity == "per_group":
            if group_size is None:
                checks.fail("group_size", "an int >= 1 (granularity='per_group' needs one)", None)
            group_size = checks.check_int(group_size, "group_size", low=1)
        elif group_size is not None:
            checks.fail("group_size", f"None with granularity={granularity!r} (groups are for 'per_group')",
                        group_size)
        return Blocking(shape, granularity, axis, group_size)

    @property
    def groups_per_row(self) -> int:
        """per_group: blocks along the last dimension, a shorter last one included."""
        return -(-self.shape[-1] // self.group_size)

    @property
    def padding(self) -> int:
        """Zeros appended to each row in the block view so that a short last group fills a block."""
        return -self.shape[-1] % self.group_size if self.granularity == "per_group" else 0

    @property
    def n_blocks(self) -> int:
        if self.granularity == "per_tensor":
            return 1
        if self.granularity == "per_channel":
            return self.shape[self.axis]
        return math.prod(self.shape[:-1]) * self.groups_per_row

    @property
    def param_shape(self) -> tuple:
        """The shape of scale / zero_point: broadcastable against x except for per_group."""
        if self.granularity == "per_tensor":
            return ()
        if self.granularity == "per_channel":
            return tuple(n if d == self.axis else 1 for d, n in enumerate(self.shape))
        return self.shape[:-1] + (self.groups_per_row,)

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """View x as (n_blocks, block_len); a view whenever the memory layout allows it."""
        if self.granularity == "per_channel" and self.axis != 0:
            x = x.movedim(self.axis, 0)
        if self.padding:
            x = torch.nn.functional.pad(x, (0, self.padding))
        return x.reshape(self.n_blocks, -1)

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_blocks`: back to `shape`."""
        if self.granularity == "per_channel" and self.axis != 0:
            moved = (self.shape[self.axis],) + tuple(n for d, n in enumerate(self.shape) if d != self.axis)
            return blocks.reshape(moved).movedim(0, self.axis)
        if self.padding:
            padded = blocks.reshape(self.shape[:-1] + (self.shape[-1] + self.padding,))
            return padded[..., :self.shape[-1]].contiguous()
        return blocks.reshape(self.shape)

    def params_to_column(self, p: torch.Tensor) -> torch.Tensor:
        """A per-block parameter as a column (n_blocks, 1), ready to broadcast over the block view."""
        return p.reshape(self.n_blocks, 1)


# --------------------------------------------------------------------------- every block's grid
def _check_arguments(x, bits, symmetric, granularity, axis, group_size, clipping) -> tuple[int, Blocking]:
    """The checks of choose_qparams and quantize; finiteness comes later, from the blocks' min/max."""
    _check_values(x)
    bits = checks.check_int(bits, "bits", MIN_BITS, MAX_BITS)
    checks.check_instance(symmetric, "symmetric", bool, "True or False")
    checks.check_choice(clipping, "clipping", CLIPPINGS)
    return bits, Blocking.make(x.shape, granularity, axis, group_size)


def _block_minmax(blocks: torch.Tensor):
    """Each block's min and max as float32 columns, and whether they (so all of x) are finite."""
    # two reductions are faster than torch.aminmax along a dim on CPU; NaN and Inf propagate into them
    x_min, x_max = blocks.amin(dim=1, keepdim=True).float(), blocks.amax(dim=1, keepdim=True).float()
    return x_min, x_max, torch.isfinite(x_min).all() & torch.isfinite(x_max).all()


def _block_qparams(blocks: torch.Tensor, bits: int, symmetric: bool, clipping: str):
    """Scale and zero point of every row of the block view, as (n_blocks, 1) columns."""
    x_min, x_max, finite = _block_minmax(blocks)
    _check_finite(finite)
    if clipping == "mse":
        return mse_clipping.best_qparams(
            blocks, x_min, x_max,
            grid_of=lambda lo, hi: qparams_from_minmax(lo, hi, bits, symmetric, check=False),
            round_trip=lambda b, s, z: linear_dequantize(linear_quantize(b, s, z, bits, check=False), s, z,
                                                         check=False))
    return qparams_from_minmax(x_min, x_max, bits, symmetric, check=False)


def choose_qparams(x: torch.Tensor, bits: int = 8, symmetric: bool = False,
                   granularity: str = "per_tensor", axis: int = 0, group_size: int | None = None,
                   *, clipping: str = "minmax"):
    """Pick (scale, zero_point) for every block of x from the block's min and max.

    Returns float32 scales and int8 zero points shaped like `Blocking.param_shape`: a scalar for
    per_tensor, x.shape[axis] entries along `axis` for per_channel, one per group for per_group.
    `clipping="mse"` searches a narrower range per block instead (see `quantize`).
    """
    bits, blocking = _check_arguments(x, bits, symmetric, granularity, axis, group_size, clipping)
    scale, zero_point = _block_qparams(blocking.to_blocks(x), bits, symmetric, clipping)
    return scale.reshape(blocking.param_shape), zero_point.reshape(blocking.param_shape)


# --------------------------------------------------------------------------- QTensor
@dataclass
class QTensor:
    """A quantized tensor: int8 codes (same shape as the original), and per-block scale/zero point."""

    data: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    bits: int
    symmetric: bool
    blocking: Blocking
    dtype: torch.dtype = torch.float32

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def granularity(self) -> str:
        return self.blocking.granularity

    def dequantize(self) -> torch.Tensor:
        """Back to floats, with the original shape and dtype."""
        b = self.blocking
        values = linear_dequantize(b.to_blocks(self.data), b.params_to_column(self.scale),
                                   b.params_to_column(self.zero_point), check=False)
        return b.from_blocks(values).to(self.dtype)

    @property
    def nbytes(self) -> int:
        """Storage if codes were packed at `bits` each, plus the scales (and zero points if asymmetric)."""
        code_bytes = math.ceil(self.data.numel() * self.bits / 8)
        param_bytes = self.scale.numel() * self.scale.element_size()
        if not self.symmetric:
            param_bytes += self.zero_point.numel() * self.zero_point.element_size()
        return code_bytes + param_bytes

    @property
    def bits_per_value(self) -> float:
        """Effective bits per original value, scales and zero points included."""
        return 8 * self.nbytes / self.data.numel()

    def __repr__(self) -> str:
        mode = "symmetric" if self.symmetric else "asymmetric"
        extra = f", group_size={self.blocking.group_size}" if self.granularity == "per_group" else ""
        extra += f", axis={self.blocking.axis}" if self.granularity == "per_channel" else ""
        return (f"QTensor(shape={tuple(self.shape)}, bits={self.bits}, {mode}, "
                f"{self.granularity}{extra}, blocks={self.scale.numel()})")


# --------------------------------------------------------------------------- quantize
def quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False, granularity: str = "per_tensor",
             axis: int = 0, group_size: int | None = None, *, clipping: str = "minmax") -> QTensor:
    """Quantize x to `bits`-bit signed codes (bits from 2 to 8) with one scale and zero point per block.

    clipping="minmax" (the default) maps each block's min and max to the ends of the code range;
    clipping="mse" searches, per block, a narrower range that lowers the mean squared error
    (worth it at 4 bits and below, where a few outliers otherwise coarsen the grid for all values).

    >>> q = quantize(torch.randn(4, 8), bits=8, granularity="per_channel")
    >>> q.scale.shape, q.data.dtype
    (torch.Size([4, 1]), torch.int8)
    """
    bits, blocking = _check_arguments(x, bits, symmetric, granularity, axis, group_size, clipping)
    blocks = blocking.to_blocks(x)                  # (n_blocks, block_len): one block per row
    if clipping == "minmax" and fast_path.applies(x):
        codes, scale, zero_point, finite = fast_path(blocks, bits, symmetric)   # the same steps, compiled
        _check_finite(finite)
    else:
        scale, zero_point = _block_qparams(blocks, bits, symmetric, clipping)
        codes = linear_quantize(blocks, scale, zero_point, bits, check=False)
    return QTensor(blocking.from_blocks(codes), scale.reshape(blocking.param_shape),
                   zero_point.reshape(blocking.param_shape), bits, symmetric, blocking, x.dtype)


def dequantize(q: QTensor) -> torch.Tensor:
    """Same as `q.dequantize()`."""
    return checks.check_instance(q, "q", QTensor, "a QTensor (the output of quantize)").dequantize()


def quantization_error(x: torch.Tensor, y) -> float:
    """Mean squared error between x and y (y may be a QTensor: it is dequantized first)."""
    if isinstance(y, QTensor):
        y = y.dequantize()
    checks.check_tensor(x, "x")
    checks.check_tensor(y, "y")
    if x.shape != y.shape:
        checks.fail("y", f"a tensor of the same shape as x, {tuple(x.shape)}", f"shape {tuple(y.shape)}")
    return float((x.double() - y.double()).pow(2).mean())


# --------------------------------------------------------------------------- fake quantization
class _RoundTrip(torch.autograd.Function):
    """quantize -> dequantize in the forward pass; the identity for gradients (straight-through)."""

    @staticmethod
    def forward(ctx, x, bits, symmetric, granularity, axis, group_size, clipping):
        return quantize(x, bits, symmetric, granularity, axis, group_size, clipping=clipping).dequantize()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None, None, None, None, None


def fake_quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False, granularity: str = "per_tensor",
                  axis: int = 0, group_size: int | None = None, *, clipping: str = "minmax") -> torch.Tensor:
    """Values of x snapped onto the quantization grid, still a float tensor.

    Rounding has zero gradient almost everywhere, which would stop training; the straight-through
    estimator pretends the round trip is the identity in the backward pass, so gradients flow to x.
    The arguments are those of `quantize`, which checks them: once per call, which matters in a
    training loop that fake-quantizes every layer at every step.
    """
    return _RoundTrip.apply(x, bits, symmetric, granularity, axis, group_size, clipping)


# --------------------------------------------------------------------------- the compiled fast path
def _minmax_steps(blocks: torch.Tensor, bits: int, symmetric: bool):
    """quantize's min/max steps as one function, for torch.compile to fuse (see coursekit.compiled).

    Checking finiteness here would read a value back in the middle of the compiled code: the flag
    is returned instead, and `quantize` checks it.
    """
    x_min, x_max, finite = _block_minmax(blocks)
    scale, zero_point = qparams_from_minmax(x_min, x_max, bits, symmetric, check=False)
    return linear_quantize(blocks, scale, zero_point, bits, check=False), scale, zero_point, finite


#: `quantize` runs tensors of at least `fast_path.min_numel` elements through this.
fast_path = compiled.FastPath(_minmax_steps)
