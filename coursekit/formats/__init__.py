"""The number formats of today's quantized models: NF4, FP4 E2M1, MXFP4, NVFP4, FP8, GGUF Q8_0/Q4_0/Q4_1.

One interface for all of them, on the block view of ``coursekit.quant`` (a tensor seen as
``(n_blocks, block_len)``, one scale per row of that view; no loop over blocks):

* ``encode(x, fmt)`` -> ``Encoded``: the codes and the scales exactly as the format stores them.
* ``decode(encoded)`` -> float32 tensor of ``x``'s shape; ``roundtrip(x, fmt)`` does both.
* ``bits_per_weight(fmt)`` and ``nbytes(shape, fmt)``: storage, scales included, to the byte.
* ``nf4_levels()``: NF4's 16 levels, computed from normal quantiles (``nf4``).

=============  ===========  ================================  ======================  =============
fmt            element      scale per block                   block                   bits / weight
=============  ===========  ================================  ======================  =============
``nf4``        4-bit level  float32 absmax                    64                      4.5
``fp4_e2m1``   E2M1         float32 absmax / 6                64                      4.5
``mxfp4``      E2M1         E8M0 power of two                 32                      4.25
``nvfp4``      E2M1         FP8 E4M3, + one float32/tensor    16                      4.5 (+32/n)
``fp8_e4m3``   FP8 E4M3     float32 amax / 448                tensor or row           8 (+32/block)
``fp8_e5m2``   FP8 E5M2     float32 amax / 57344              tensor or row           8 (+32/block)
``q8_0``       int8         float16 absmax / 127              32                      8.5
``q4_0``       4-bit int    float16 (signed max) / -8         32                      4.5
``q4_1``       4-bit uint   float16 (max - min) / 15, + min   32                      5.0
=============  ===========  ================================  ======================  =============

Block formats cut the last dimension: its length must be a multiple of the block (as in GGUF,
where every row is a whole number of blocks). Each family lives in its own short module:
``minifloat`` (E2M1 and E8M0 bit by bit), ``nf4``, ``fp8``, ``microscaling`` (FP4, MXFP4, NVFP4)
and ``ggml`` (Q8_0, Q4_0, Q4_1 and GGUF's byte layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import checks
from ..quant import Blocking
from . import fp8, ggml, microscaling, nf4
from .minifloat import E2M1_VALUES, e2m1_decode, e2m1_encode, e8m0_decode, e8m0_encode, e8m0_from_amax
from .nf4 import nf4_levels

__all__ = ["FORMATS", "FormatSpec", "Encoded", "encode", "decode", "roundtrip", "bits_per_weight", "nbytes",
           "nf4_levels", "e2m1_decode", "e2m1_encode", "e8m0_decode", "e8m0_encode", "e8m0_from_amax",
           "E2M1_VALUES", "spec"]

FP8_GRANULARITIES = ("per_tensor", "per_row")


@dataclass(frozen=True)
class FormatSpec:
    """What one format stores: bits per code, the block, and the bits of each level of scale."""

    name: str
    code_bits: int
    block: int | None          # elements per block; None: the whole tensor or a row (FP8)
    scale_bits: int            # bits of each block's scale
    tensor_scale_bits: int = 0  # bits of one extra scale for the whole tensor (NVFP4)
    description: str = ""


FORMATS: dict[str, FormatSpec] = {s.name: s for s in (
    FormatSpec("nf4", 4, 64, 32, description="QLoRA NormalFloat 4-bit, float32 absmax per 64"),
    FormatSpec("fp4_e2m1", 4, 64, 32, description="FP4 E2M1, float32 absmax per 64"),
    FormatSpec("mxfp4", 4, 32, 8, description="OCP MXFP4: E2M1, E8M0 scale per 32"),
    FormatSpec("nvfp4", 4, 16, 8, 32, description="NVIDIA NVFP4: E2M1, E4M3 scale per 16, float32 per tensor"),
    FormatSpec("fp8_e4m3", 8, None, 32, description="FP8 E4M3, float32 scale per tensor or row"),
    FormatSpec("fp8_e5m2", 8, None, 32, description="FP8 E5M2, float32 scale per tensor or row"),
    FormatSpec("q8_0", 8, 32, 16, description="GGUF Q8_0: int8, float16 scale per 32"),
    FormatSpec("q4_0", 4, 32, 16, description="GGUF Q4_0: 4-bit, float16 scale per 32"),
    FormatSpec("q4_1", 4, 32, 32, description="GGUF Q4_1: 4-bit, float16 scale and float16 minimum per 32"),
)}


def spec(fmt: str) -> FormatSpec:
    """The FormatSpec of ``fmt``; an unknown name raises ValueError listing the valid ones."""
    checks.check_choice(fmt, "fmt", FORMATS)
    return FORMATS[fmt]


def _check_granularity(fmt: str, granularity):
    if FORMATS[fmt].block is None:
        return checks.check_choice("per_tensor" if granularity is None else granularity, "granularity",
                                   FP8_GRANULARITIES)
    if granularity is not None:
        checks.fail("granularity", f"None for {fmt!r} (its block is fixed at {FORMATS[fmt].block}; "
                    "only the fp8 formats take 'per_tensor' or 'per_row')", repr(granularity))
    return None


def _blocking(shape: tuple, fmt: str, granularity) -> Blocking:
    s = FORMATS[fmt]
    if s.block is None:
        if granularity == "per_row" and len(shape) < 2:
            checks.fail("x", "a tensor with at least 2 dimensions for granularity='per_row'", f"shape {shape}")
        return Blocking.make(shape, "per_tensor") if granularity == "per_tensor" else \
            Blocking.make(shape, "per_channel", axis=0)
    if not shape or shape[-1] % s.block:
        checks.fail("x", f"a last dimension that is a multiple of {s.block} ({fmt} blocks)",
                    f"shape {shape}")
    return Blocking.make(shape, "per_group", group_size=s.block)


@dataclass
class Encoded:
    """A tensor in a number format: codes (n_blocks, block_len) and the scales as stored.

    ``codes``: uint8 (int8 for q8_0, the float8 dtype for fp8); ``scales``: one per block in the
    stored dtype (float32, float16, uint8 E8M0 bytes or float8_e4m3fn), and for q4_1 two per block,
    (n_blocks, 2) float16: the scale d and the block's minimum m; ``tensor_scale``: NVFP4's
    float32 second-level scale (None elsewhere).
    """

    fmt: str
    shape: tuple
    codes: torch.Tensor
    scales: torch.Tensor
    tensor_scale: torch.Tensor | None = None
    granularity: str | None = None
    _blocking: Blocking | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.fmt, self.granularity)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / math.prod(self.shape)

    def to_gguf_bytes(self):
        """ggml's block bytes (numpy uint8, one row per block) for q8_0, q4_0, q4_1 and mxfp4."""
        return ggml.block_bytes(self.fmt, self.codes, self.scales)

    @staticmethod
    def from_gguf_bytes(raw, shape, fmt: str) -> "Encoded":
        """An Encoded from a GGUF tensor's bytes (q8_0, q4_0, q4_1 or mxfp4) and its (rows, cols) shape."""
        checks.check_choice(fmt, "fmt", ("q8_0", "q4_0", "q4_1", "mxfp4"))
        shape = tuple(shape)
        codes, scales = ggml.from_block_bytes(fmt, raw)
        if codes.numel() != math.prod(shape):
            checks.fail("shape", f"{codes.numel()} elements (what the bytes hold)", f"{shape}")
        return Encoded(fmt, shape, codes, scales)


_ENCODERS = {
    "nf4": nf4.encode_blocks, "fp4_e2m1": microscaling.encode_fp4, "mxfp4": microscaling.encode_mxfp4,
    "nvfp4": microscaling.encode_nvfp4, "q8_0": ggml.encode_q8_0, "q4_0": ggml.encode_q4_0,
    "q4_1": ggml.encode_q4_1,
}
_DECODERS = {
    "nf4": nf4.decode_blocks, "fp4_e2m1": microscaling.decode_fp4, "mxfp4": microscaling.decode_mxfp4,
    "nvfp4": microscaling.decode_nvfp4, "q8_0": ggml.decode_q8_0, "q4_0": ggml.decode_q4_0,
    "q4_1": ggml.decode_q4_1,
}


def encode(x: torch.Tensor, fmt: str, granularity: str | None = None) -> Encoded:
    """Quantize ``x`` to ``fmt`` (one of FORMATS). ``granularity``: fp8 only, 'per_tensor' (default)
    or 'per_row'. Block formats need the last dimension to be a multiple of their block."""
    checks.check_tensor(x, "x", floating=True)
    spec(fmt)
    granularity = _check_granularity(fmt, granularity)
    if not torch.isfinite(x).all():
        checks.fail("x", "finite values (no inf or nan)", "a tensor with inf or nan")
    x = x.detach().float().cpu()
    blocking = _blocking(tuple(x.shape), fmt, granularity)
    blocks = blocking.to_blocks(x)
    if fmt in fp8.FP8_DTYPES:
        codes, scales = fp8.encode_blocks(blocks, fmt)
        return Encoded(fmt, tuple(x.shape), codes, scales, None, granularity, blocking)
    out = _ENCODERS[fmt](blocks)
    tensor_scale = out[2] if len(out) == 3 else None
    return Encoded(fmt, tuple(x.shape), out[0], out[1], tensor_scale, None, blocking)


def decode(encoded: Encoded) -> torch.Tensor:
    """The float32 tensor an ``Encoded`` stands for, in the original shape."""
    checks.check_instance(encoded, "encoded", Encoded, "an Encoded (the result of encode)")
    blocking = encoded._blocking or _blocking(encoded.shape, encoded.fmt, encoded.granularity)
    if encoded.fmt in fp8.FP8_DTYPES:
        blocks = fp8.decode_blocks(encoded.codes, encoded.scales)
    elif encoded.fmt == "nvfp4":
        blocks = microscaling.decode_nvfp4(encoded.codes, encoded.scales, encoded.tensor_scale)
    else:
        blocks = _DECODERS[encoded.fmt](encoded.codes, encoded.scales)
    return blocking.from_blocks(blocks)


def roundtrip(x: torch.Tensor, fmt: str, granularity: str | None = None) -> torch.Tensor:
    """``decode(encode(x, fmt))`` in x's dtype: the values a model in ``fmt`` actually computes with."""
    checks.check_tensor(x, "x", floating=True)
    return decode(encode(x, fmt, granularity)).to(x.dtype)


def nbytes(shape, fmt: str, granularity: str | None = None) -> int:
    """Bytes to store a tensor of ``shape`` in ``fmt``: codes, block scales and any tensor scale.

    Exact to the byte: for GGUF's formats it equals the tensor's size in a .gguf file.
    """
    spec(fmt)
    granularity = _check_granularity(fmt, granularity)
    shape = tuple(checks.check_int(n, "shape", low=0) for n in shape)
    s = FORMATS[fmt]
    n = math.prod(shape)
    if s.block is None:
        n_blocks = 1 if granularity == "per_tensor" else (shape[0] if shape else 1)
    else:
        _blocking(shape, fmt, None)
        n_blocks = n // s.block
    bits = n * s.code_bits + n_blocks * s.scale_bits + s.tensor_scale_bits
    return math.ceil(bits / 8)


def bits_per_weight(fmt: str, shape=None, granularity: str | None = None) -> float:
    """Bits per weight of ``fmt``, scales included.

    Without ``shape``: the format's rate on a large tensor (codes plus block scales; the single
    per-tensor scale of nvfp4 and fp8 per-tensor counts as 0). With ``shape``: exactly
    ``8 * nbytes(shape, fmt) / numel``, every scale counted (fp8 per_row needs it).
    """
    s = spec(fmt)
    granularity = _check_granularity(fmt, granularity)
    if shape is not None:
        shape = tuple(shape)
        return 8 * nbytes(shape, fmt, granularity) / math.prod(shape)
    if s.block is None:
        if granularity == "per_row":
            checks.fail("shape", "the tensor's shape: fp8 per_row spends 32 bits per row", None)
        return float(s.code_bits)
    return s.code_bits + s.scale_bits / s.block
