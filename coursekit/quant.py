"""Linear quantization: one mechanism for every granularity.

A real value r is stored as an integer code q with r ≈ scale * (q - zero_point).
The lesson's three steps are public functions:

    choose_qparams(x, ...)              -> scale, zero_point   (from each block's min/max)
    linear_quantize(x, scale, zp, bits) -> codes               q = clamp(round(x / s) + z)
    linear_dequantize(codes, scale, zp) -> values              r = s * (q - z)

`quantize` chains them and returns a `QTensor`.

Granularity is only a way to cut a tensor into blocks, each with its own scale and zero point:

* ``per_tensor``  – one block holding everything;
* ``per_channel`` – one block per index along ``axis`` (a row of a weight when axis=0);
* ``per_group``   – blocks of ``group_size`` consecutive elements along the last dimension.

We view the tensor as a matrix of shape ``(n_blocks, block_len)``, take min/max per row, quantize,
and view it back. The same few lines serve all three granularities, with no Python loop.

Codes are signed, in ``[-2^(b-1), 2^(b-1) - 1]`` (for 8 bits: -128..127), and live in an int8
tensor; `coursekit.packing` squeezes sub-byte codes together for storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GRANULARITIES = ("per_tensor", "per_channel", "per_group")
MIN_BITS, MAX_BITS = 2, 8


# --------------------------------------------------------------------------- argument checks
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int between {MIN_BITS} and {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    return bits


def _check_float_tensor(x, name: str = "x", finite: bool = True) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (e.g. float32), got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: there is nothing to quantize")
    if finite:
        _check_finite(torch.isfinite(x).all(), name)
    return x


def _check_finite(all_finite: torch.Tensor, name: str = "x"):
    if not bool(all_finite):
        raise ValueError(f"{name} contains NaN or Inf: quantization needs finite values")


def qrange(bits: int) -> tuple[int, int]:
    """The signed integer range used for codes: (-2^(b-1), 2^(b-1) - 1)."""
    _check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# --------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Blocking:
    """How a tensor of `shape` is cut into blocks. Knows how to go to and from the block view."""

    shape: tuple
    granularity: str = "per_tensor"
    axis: int = 0
    group_size: int | None = None

    @staticmethod
    def make(shape, granularity="per_tensor", axis=0, group_size=None) -> "Blocking":
        shape = tuple(shape)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if granularity == "per_channel":
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise TypeError(f"axis must be an int, got {axis!r}")
            if not -len(shape) <= axis < len(shape) or len(shape) == 0:
                raise ValueError(f"axis {axis} is out of range for a tensor with {len(shape)} dimension(s)")
            axis = axis % len(shape)
        else:
            axis = 0
        if granularity == "per_group":
            if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
                raise ValueError(f"granularity='per_group' needs group_size, a positive int; got {group_size!r}")
            last = shape[-1] if shape else 1
            if last % group_size:
                raise ValueError(
                    f"the last dimension ({last}) is not divisible by group_size ({group_size}): "
                    f"pick a group_size that divides it"
                )
        elif group_size is not None:
            raise ValueError(f"group_size is only used with granularity='per_group', not {granularity!r}")
        return Blocking(shape, granularity, axis, group_size)

    @property
    def n_blocks(self) -> int:
        numel = math.prod(self.shape)
        if self.granularity == "per_tensor":
            return 1
        if self.granularity == "per_channel":
            return self.shape[self.axis]
        return numel // self.group_size

    @property
    def param_shape(self) -> tuple:
        """The shape of scale / zero_point: broadcastable against x except for per_group."""
        if self.granularity == "per_tensor":
            return ()
        if self.granularity == "per_channel":
            return tuple(n if d == self.axis else 1 for d, n in enumerate(self.shape))
        return self.shape[:-1] + (self.shape[-1] // self.group_size,)

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """View x as (n_blocks, block_len); a view whenever the memory layout allows it."""
        if self.granularity == "per_channel" and self.axis != 0:
            x = x.movedim(self.axis, 0)
        return x.reshape(self.n_blocks, -1)

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        if self.granularity == "per_channel" and self.axis != 0:
            moved = (self.shape[self.axis],) + tuple(n for d, n in enumerate(self.shape) if d != self.axis)
            return blocks.reshape(moved).movedim(0, self.axis)
        return blocks.reshape(self.shape)

    def params_to_column(self, p: torch.Tensor) -> torch.Tensor:
        """A per-block parameter as a column (n_blocks, 1), ready to broadcast over the block view."""
        return p.reshape(self.n_blocks, 1)


# --------------------------------------------------------------------------- the three steps
def _qparams_from_minmax(x_min, x_max, bits: int, symmetric: bool):
    """Scale and zero point per block from the block's min and max (float32 columns).

    Asymmetric: min maps to qmin and max to qmax; the zero point is rounded and clipped into range.
    The range is first widened to include 0, as PyTorch's observers do: then 0 is exactly
    representable (padding, ReLU zeros) and the zero point always lies inside the code range, so
    clipping it never pushes real values off the grid.
    Symmetric: zero point 0 and scale = max|x| / qmax, so +max|x| lands on qmax.
    An all-zero block would give scale 0 (and NaN later): there we pick scale 1 and zero point 0.
    """
    qmin, qmax = qrange(bits)
    x_min, x_max = torch.clamp(x_min, max=0.0), torch.clamp(x_max, min=0.0)
    absmax = torch.maximum(x_min.abs(), x_max.abs())
    if symmetric:
        scale = absmax / qmax
        zero_point = torch.zeros_like(scale)
        degenerate = scale < torch.finfo(torch.float32).tiny
    else:
        scale = (x_max - x_min) / (qmax - qmin)
        degenerate = scale < torch.finfo(torch.float32).tiny
        safe = torch.where(degenerate, torch.ones_like(scale), scale)
        zero_point = torch.round(qmin - x_min / safe).clamp_(qmin, qmax)
    fallback = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    scale = torch.where(degenerate, fallback, scale)
    zero_point = torch.where(degenerate, torch.zeros_like(zero_point), zero_point)
    return scale, zero_point.to(torch.int8 if bits <= 8 else torch.int32)


def choose_qparams(x: torch.Tensor, bits: int = 8, symmetric: bool = False,
                   granularity: str = "per_tensor", axis: int = 0, group_size: int | None = None,
                   *, clipping: str = "minmax"):
    """Pick (scale, zero_point) for every block of x from the block's min and max.

    Returns float32 scales and int8 zero points shaped like `Blocking.param_shape`: a scalar for
    per_tensor, x.shape[axis] entries along `axis` for per_channel, one per group for per_group.
    `clipping="mse"` searches a narrower range per block instead (see `quantize`).
    """
    _check_bits(bits)
    _check_float_tensor(x, finite=False)
    _check_clipping(clipping)
    blocking = Blocking.make(x.shape, granularity, axis, group_size)
    scale, zero_point = _block_qparams(blocking.to_blocks(x), bits, symmetric, clipping)
    return scale.reshape(blocking.param_shape), zero_point.reshape(blocking.param_shape)


CLIPPINGS = ("minmax", "mse")
#: Fractions of each block's range tried by clipping="mse" (1.0 first: never worse than min/max).
CLIP_FRACTIONS = tuple(1.0 - 0.025 * i for i in range(21))     # 1.0, 0.975, ..., 0.5


def _block_minmax(blocks: torch.Tensor):
    # two reductions are faster than torch.aminmax along a dim on CPU; NaN and Inf propagate
    # into them, so checking these (n_blocks, 1) columns is the finiteness check for all of x
    x_min, x_max = blocks.amin(dim=1, keepdim=True).float(), blocks.amax(dim=1, keepdim=True).float()
    _check_finite(torch.isfinite(x_min).all() & torch.isfinite(x_max).all())
    return x_min, x_max


def _block_qparams(blocks: torch.Tensor, bits: int, symmetric: bool, clipping: str = "minmax"):
    x_min, x_max = _block_minmax(blocks)
    if clipping == "minmax":
        return _qparams_from_minmax(x_min, x_max, bits, symmetric)
    return _mse_qparams(blocks, x_min, x_max, bits, symmetric)


def _check_clipping(clipping):
    if clipping not in CLIPPINGS:
        raise ValueError(f"clipping must be one of {CLIPPINGS}, got {clipping!r}")


def _mse_qparams(blocks, x_min, x_max, bits, symmetric):
    """Per block, the clipping range (a fraction of min..max) whose round trip has the lowest MSE.

    With few bits, the rare largest values stretch the grid for everyone: clipping them trades a
    large error on a few values for a finer step on all the others. The search is a loop over the
    candidate fractions; every candidate is evaluated for all blocks at once.
    """
    best_err = best_scale = best_zero = None
    for frac in CLIP_FRACTIONS:
        scale, zero = _qparams_from_minmax(x_min * frac, x_max * frac, bits, symmetric)
        back = (_linear_quantize(blocks, scale, zero, bits).float() - zero) * scale
        err = back.sub_(blocks).pow_(2).sum(dim=1, keepdim=True)
        if best_err is None:
            best_err, best_scale, best_zero = err, scale, zero
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def linear_quantize(x: torch.Tensor, scale, zero_point, bits: int = 8) -> torch.Tensor:
    """Codes q = clamp(round(x / scale) + zero_point, qmin, qmax), as int8.

    `scale` and `zero_point` are numbers or tensors that broadcast against x (per-tensor or
    per-channel). Rounding is round-half-to-even, as torch.round does.
    """
    _check_bits(bits)
    _check_float_tensor(x)
    scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    if bool((scale <= 0).any()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("scale must be positive and finite")
    return _linear_quantize(x, scale, torch.as_tensor(zero_point, device=x.device), bits)


def _linear_quantize(x, scale, zero_point, bits):
    qmin, qmax = qrange(bits)
    q = x.float() / scale          # the one full-size temporary; the rest happens in place
    q.round_().add_(zero_point).clamp_(qmin, qmax)
    return q.to(torch.int8)


def linear_dequantize(codes: torch.Tensor, scale, zero_point, dtype=torch.float32) -> torch.Tensor:
    """Values r = scale * (q - zero_point), in `dtype`."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor of integer codes, got {type(codes).__name__}")
    if codes.is_floating_point():
        raise TypeError(f"codes must be an integer tensor (the output of linear_quantize), got {codes.dtype}")
    scale = torch.as_tensor(scale, dtype=torch.float32, device=codes.device)
    zero_point = torch.as_tensor(zero_point, device=codes.device)
    return ((codes.float() - zero_point) * scale).to(dtype)


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
                                   b.params_to_column(self.zero_point))
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


def quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False, granularity: str = "per_tensor",
             axis: int = 0, group_size: int | None = None, *, clipping: str = "minmax") -> QTensor:
    """Quantize x to `bits`-bit signed codes with one scale and zero point per block.

    clipping="minmax" (the default) maps each block's min and max to the ends of the code range;
    clipping="mse" searches, per block, a narrower range that lowers the mean squared error
    (worth it at 4 bits and below, where a few outliers otherwise coarsen the grid for all values).

    >>> q = quantize(torch.randn(4, 8), bits=8, granularity="per_channel")
    >>> q.scale.shape, q.data.dtype
    (torch.Size([4, 1]), torch.int8)
    """
    _check_bits(bits)
    _check_float_tensor(x, finite=False)
    _check_clipping(clipping)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    blocking = Blocking.make(x.shape, granularity, axis, group_size)
    blocks = blocking.to_blocks(x)
    if clipping == "minmax" and x.numel() >= FAST_PATH_MIN_NUMEL and fast_path.enabled:
        codes, scale, zero_point = fast_path(blocks, bits, symmetric)
    else:
        codes, scale, zero_point = _quantize_blocks(blocks, bits, symmetric, clipping)
    return QTensor(blocking.from_blocks(codes), scale.reshape(blocking.param_shape),
                   zero_point.reshape(blocking.param_shape), bits, symmetric, blocking, x.dtype)


def _quantize_blocks(blocks: torch.Tensor, bits: int, symmetric: bool, clipping: str = "minmax"):
    """The whole recipe on the (n_blocks, block_len) view: parameters per row, then codes."""
    scale, zero_point = _block_qparams(blocks, bits, symmetric, clipping)
    return _linear_quantize(blocks, scale, zero_point, bits), scale, zero_point


# --------------------------------------------------------------------------- fast path
#: Tensors at least this large (a 4096 x 4096 weight) take the compiled path in `quantize`.
FAST_PATH_MIN_NUMEL = 4096 * 4096


class _FastPath:
    """`_quantize_blocks` compiled by torch.compile into one or two passes over memory.

    Quantization is memory-bound: the eager recipe above reads and writes the whole tensor at
    every step (divide, round, add, clamp, cast), so it runs many times slower than one read
    of the weight. Fused, the same math gives identical codes and scales at close to the
    speed of a single pass. Compiling takes seconds, so only large tensors use it, where it pays
    off: quantizing a model means many such matrices, compiled once (shapes are dynamic).
    If compilation is unavailable or fails, `quantize` quietly keeps the eager path.
    Switch it off with `fast_path.enabled = False` or COURSEKIT_FAST_QUANT=0.
    """

    def __init__(self):
        import os
        self.enabled = os.environ.get("COURSEKIT_FAST_QUANT", "1") != "0"
        self._compiled = None
        self.error: str | None = None

    def __call__(self, blocks, bits, symmetric):
        try:
            if self._compiled is None:
                self._compiled = torch.compile(_fused_minmax_quantize, dynamic=True)
            codes, scale, zero_point, finite = self._compiled(blocks, bits, symmetric)
        except Exception as exc:  # no compiler, an unsupported device, ...: eager is always right
            self.enabled, self.error = False, f"{type(exc).__name__}: {exc}"
            return _quantize_blocks(blocks, bits, symmetric)
        _check_finite(finite)
        return codes, scale, zero_point


def _fused_minmax_quantize(blocks, bits: int, symmetric: bool):
    # the same steps as _quantize_blocks, written without the Python-side finiteness check
    x_min, x_max = blocks.amin(dim=1, keepdim=True).float(), blocks.amax(dim=1, keepdim=True).float()
    scale, zero_point = _qparams_from_minmax(x_min, x_max, bits, symmetric)
    finite = torch.isfinite(x_min).all() & torch.isfinite(x_max).all()
    return _linear_quantize(blocks, scale, zero_point, bits), scale, zero_point, finite


fast_path = _FastPath()


def dequantize(q: QTensor) -> torch.Tensor:
    """Same as `q.dequantize()`."""
    if not isinstance(q, QTensor):
        raise TypeError(f"q must be a QTensor (the output of quantize), got {type(q).__name__}")
    return q.dequantize()


def quantization_error(x: torch.Tensor, y) -> float:
    """Mean squared error between x and y (y may be a QTensor: it is dequantized first)."""
    if isinstance(y, QTensor):
        y = y.dequantize()
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
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
    """
    _check_bits(bits)
    _check_float_tensor(x.detach() if isinstance(x, torch.Tensor) else x)
    return _RoundTrip.apply(x, bits, symmetric, granularity, axis, group_size, clipping)
