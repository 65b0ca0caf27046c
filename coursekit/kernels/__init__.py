"""Weight-only layers on PyTorch's fused int8 / int4 CPU kernels, and the CPU features that matter.

Why this module exists. ``coursekit.layers`` (``W8A16Linear``, ``PackedLinear``) shows the idea in
readable code: dequantize the whole weight, then run an ordinary float matmul. That saves memory but
adds work, so those layers are *slower* than fp32. Speed needs kernels that compute on the codes
themselves. PyTorch ships two for the CPU, and the layers here are thin wrappers around them:

* ``Int8WeightLinear``: int8 codes, one symmetric scale per output channel (the grid of
  ``W8A16Linear``), through ``torch.ops.aten._weight_int8pack_mm``.
* ``Int4WeightLinear``: asymmetric 4-bit codes per group of input weights, packed two to a byte in
  the kernel's own layout, through ``torch.ops.aten._weight_int4pack_mm_for_cpu``.

When are they faster? Generating text one token at a time multiplies a single activation row by
every weight: each weight byte is read once and used for two flops, so the time is the time to
*read the weights from memory*. Reading 4x (int8) or 8x (int4) fewer bytes than fp32 is where the
speed comes from. With many rows at once (a long prompt, a big batch) each weight is reused many
times and arithmetic dominates: then these kernels, which turn codes back into floats inside the
matmul, gain little or lose. ``benchmarks/decode.py`` measures both cases.

What the kernels compute (read from PyTorch's source and checked by tests/test_kernels.py):

* int8: ``y = x @ (codes * scales[:, None]).T`` with codes ``(N, K)`` int8 and ``scales`` ``(N,)``
  in x's dtype. x is cast to bf16: the vectorized AVX2/AVX-512 loops are bf16-only (fp32 runs a
  scalar loop). They read 8 (AVX2) or 16 (AVX-512) values per step with *aligned* loads, so
  ``in_features`` must be a multiple of 16 and x's rows 32-byte aligned, or the process crashes
  (torch 2.13 checks neither); this layer makes sure of both, or takes the fallback.
* int4: unsigned codes u in [0, 15]; ``w = (u - 8) * scale + zero`` per group of ``group_size``
  consecutive inputs (32, 64, 128 or 256). ``scales_and_zeros`` is ``(K / group_size, N, 2)``,
  ``[..., 0]`` the scale and ``[..., 1]`` the zero, both in x's dtype. The zero is a *float offset*,
  not an integer zero point: the course's grid ``w = s * (c - z)`` with signed codes c = u - 8
  and integer zero point z is this with ``zero = -z * s``. Packing
  (``_convert_weight_to_int4pack_for_cpu``: int32 codes ``(N, K)`` -> uint8 ``(N, K / 2)``) needs
  N a multiple of 16 (the layer pads the rows, as torchao does) and K even, and its byte order
  depends on the CPU's kernel level (AVX-512, AVX2, other). coursekit never models that order: it
  reads the codes back through the kernel itself (``_unpack_int4``).

Every layer says which way it computed: ``layer.path`` is the path of the last call,
``layer.kernel_path()`` the path a call would take now: "aten int8 kernel", "aten int4 kernel", or
"fallback: <reason>" (plain dequantize-then-matmul, e.g. on CUDA). Nothing falls back silently.

The modules: ``cpu`` (the CPU's features and last-level cache), ``base`` (what both layers share),
``int8`` and ``int4`` (one layer each), ``timing`` (the stopwatch speed comparisons use: contenders
timed in interleaved rounds).
"""

from .cpu import ASSUMED_LLC_BYTES, CPUFeatures, cpu_features, cpu_flags, llc_bytes
from .int4 import INT4_GROUP_SIZES, INT4_ROW_BLOCK, Int4WeightLinear, _unpack_int4
from .int8 import INT8_K_MULTIPLE, Int8WeightLinear
from .timing import interleaved_median_ms, median_ms

__all__ = ["Int8WeightLinear", "Int4WeightLinear", "CPUFeatures", "cpu_features", "INT4_GROUP_SIZES",
           "llc_bytes", "interleaved_median_ms", "median_ms"]
