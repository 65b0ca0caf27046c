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
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, layers, packing, quant

__all__ = ["Int8WeightLinear", "Int4WeightLinear", "CPUFeatures", "cpu_features", "INT4_GROUP_SIZES",
           "llc_bytes"]

#: Group sizes ``_weight_int4pack_mm_for_cpu`` accepts.
INT4_GROUP_SIZES = (32, 64, 128, 256)
#: Rows the int4 packing works on at a time: out_features is padded up to a multiple of it.
INT4_ROW_BLOCK = 16
#: in_features must be a multiple of this for the int8 kernel (its AVX-512 loop reads 16 at a time).
INT8_K_MULTIPLE = 16
_ALIGN = 64     # bytes; PyTorch's CPU allocator aligns to 64, views with an offset may not be
_UNPACK_ROWS = 512      # rows of the identity per call when reading int4 codes back (``_unpack_int4``)


# --------------------------------------------------------------------------- CPU features
@dataclass(frozen=True)
class CPUFeatures:
    """The instruction-set features that decide how fast low precision runs on this CPU.

    ``capability`` is the level of PyTorch's own CPU kernels ("AVX512", "AVX2", "DEFAULT", ...;
    ``ATEN_CPU_CAPABILITY`` can lower it); ``source`` says where the flags came from.
    """

    avx2: bool
    avx512f: bool
    avx512_bf16: bool      # bf16 dot products in AVX-512
    avx512_vnni: bool      # int8 dot products in AVX-512
    avx_vnni: bool         # int8 dot products in AVX2-class cores
    amx_tile: bool         # AMX matrix tiles ...
    amx_bf16: bool         # ... multiplying bf16
    amx_int8: bool         # ... multiplying int8
    capability: str
    source: str

    @property
    def amx(self) -> bool:
        return self.amx_tile and (self.amx_bf16 or self.amx_int8)

    @property
    def summary(self) -> str:
        if self.avx512f:
            extras = [w for w, f in (("bf16", self.avx512_bf16), ("VNNI", self.avx512_vnni)) if f]
            vector = "AVX-512" + (f" with {' and '.join(extras)}" if extras else " (no bf16, no VNNI)")
        elif self.avx2:
            vector = "AVX2" + (" with VNNI" if self.avx_vnni else " (no VNNI)")
        else:
            vector = "no AVX2"
        amx = ("AMX (" + ", ".join(w for w, f in (("bf16", self.amx_bf16), ("int8", self.amx_int8)) if f) + ")"
               if self.amx else "no AMX")
        return f"{vector}, {amx}; PyTorch CPU kernels: {self.capability} (flags from {self.source})"

    def __str__(self) -> str:
        return self.summary


_FLAG_NAMES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """Every flag the CPU reports in /proc/cpuinfo ("avx512_bf16", ...), or None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def cpu_features() -> CPUFeatures:
    """This CPU's features, from /proc/cpuinfo; elsewhere (macOS, Windows) from PyTorch's kernel level.

    Without /proc/cpuinfo only what ``torch.backends.cpu.get_cpu_capability()`` implies is known
    (AVX512 implies avx2 and avx512f); the finer flags are then reported False.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    if flags is not None:
        return CPUFeatures(*(name in flags for name in _FLAG_NAMES), capability=capability,
                           source="/proc/cpuinfo")
    avx512 = capability.startswith("AVX512")
    known = {"avx2": avx512 or capability == "AVX2", "avx512f": avx512}
    return CPUFeatures(*(known.get(name, False) for name in _FLAG_NAMES), capability=capability,
                       source="torch (no /proc/cpuinfo; finer flags unknown)")


# --------------------------------------------------------------------------- shared helpers
def _check_linear(linear) -> nn.Linear:
    return checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """t, or a fresh (64-byte aligned) copy when its data does not start on a 64-byte boundary."""
    return t if t.data_ptr() % _ALIGN == 0 else t.clone(memory_format=torch.contiguous_format)


def _fallback_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"fallback: weights on {device.type} (these fused kernels are CPU-only)"
    return None


class _WeightOnlyLinear(nn.Module):
    """What both layers share: the path bookkeeping, bias handling and the forward skeleton."""

    KERNEL = ""          # the words for the fused path, e.g. "aten int8 kernel"

    def _kernel_blocker(self) -> str | None:
        """Why this layer cannot use the kernel for a CPU call (None if it can)."""
        return None

    def kernel_path(self) -> str:
        """The path a call takes now: the kernel's name, or "fallback: <reason>"."""
        return _fallback_reason(self._codes().device) or self._kernel_blocker() or self.KERNEL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.check_tensor(x, "x", floating=True)
        if x.shape[-1] != self.in_features:
            checks.fail("x", f"a last dimension of {self.in_features} (in_features)", f"shape {tuple(x.shape)}")
        self.path = self.kernel_path()
        x2 = x.reshape(-1, self.in_features)
        if self.path == self.KERNEL:
            y = self._kernel_mm(_aligned(x2.to(torch.bfloat16).contiguous())).to(x.dtype)
        else:
            y = F.linear(x2, self.dequantized_weight(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{self._repr_extra()}, path={self.kernel_path()!r}")


# --------------------------------------------------------------------------- int8
class Int8WeightLinear(_WeightOnlyLinear):
    """A linear layer with int8 weights that multiplies on the codes (``_weight_int8pack_mm``).

    Buffers (exactly what is stored):
      int8_weight  (out_features, in_features) int8, symmetric codes in [-127, 127]
      scales       (out_features,) bf16, one per output channel (the kernel wants x's dtype: bf16)
      bias         (out_features,) in the Linear's dtype, or None

    weight = int8_weight * scales[:, None]; the codes are those of ``coursekit.quant.quantize(w,
    bits=8, symmetric=True, granularity="per_channel")`` (and of ``W8A16Linear``), the scales the
    same rounded to bf16. CPU calls need in_features % 16 == 0; other sizes take the fallback.
    """

    KERNEL = "aten int8 kernel"

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = checks.check_int(in_features, "in_features", low=1)
        self.out_features = checks.check_int(out_features, "out_features", low=1)
        self.register_buffer("int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.bfloat16, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self.path = None        # set by every call

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightLinear":
        """Quantize an ``nn.Linear``: symmetric int8, one scale per output channel.

        A meta Linear gives an empty layer (fill it with ``load_state_dict(sd, assign=True)``)."""
        w = _check_linear(linear).weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, dtype=w.dtype,
                    device=w.device)
        if w.is_meta:
            return layer
        codes, scales = layers.int8_per_channel(w)      # the readable W8A16Linear's codes
        layer.int8_weight.copy_(codes)
        layer.scales.copy_(scales)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def _codes(self) -> torch.Tensor:
        return self.int8_weight

    def _kernel_blocker(self) -> str | None:
        if self.in_features % INT8_K_MULTIPLE:
            return (f"fallback: in_features={self.in_features} is not a multiple of {INT8_K_MULTIPLE} "
                    "(the int8 kernel's vector loop would read past the rows)")
        return None

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """int8_weight * scales: (out_features, in_features), in ``dtype`` (default fp32)."""
        dtype = torch.float32 if dtype is None else dtype
        return self.int8_weight.to(dtype) * self.scales.to(dtype)[:, None]

    def _kernel_mm(self, x_bf16: torch.Tensor) -> torch.Tensor:
        if self.int8_weight.data_ptr() % _ALIGN:      # e.g. loaded with assign=True from a file
            self.int8_weight = _aligned(self.int8_weight)
        return torch.ops.aten._weight_int8pack_mm(x_bf16, self.int8_weight, self.scales)

    def _repr_extra(self) -> str:
        return ", int8 per-channel"


# --------------------------------------------------------------------------- int4 packing
def _pack_int4(unsigned_codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes in [0, 15], N a multiple of 16 -> the kernel's uint8 (N, K / 2), packed on the CPU."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned_codes.to("cpu", torch.int32), 1)


def _unpack_int4(packed: torch.Tensor, group_size: int) -> torch.Tensor:
    """The codes (N, K) uint8 that the kernel reads from ``packed``, whatever its byte order.

    The kernel computes x @ ((u - 8) * scale + zero).T; with scale 1 and zero 8 that is x @ u.T,
    so the identity matrix as x returns the codes themselves, exactly (integers 0..15 in bf16).
    It runs on the CPU, a slice of the identity's rows at a time (never a K x K matrix).
    """
    packed, k = packed.cpu(), packed.shape[1] * 2
    unit = torch.tensor([1.0, 8.0], dtype=torch.bfloat16).expand(k // group_size, packed.shape[0], 2).contiguous()
    eyes = (F.one_hot(torch.arange(k0, min(k0 + _UNPACK_ROWS, k)), k).to(torch.bfloat16)
            for k0 in range(0, k, _UNPACK_ROWS))
    return torch.cat([torch.ops.aten._weight_int4pack_mm_for_cpu(eye, packed, group_size, unit)
                      for eye in eyes]).t().to(torch.uint8)


# --------------------------------------------------------------------------- int4
class Int4WeightLinear(_WeightOnlyLinear):
    """A linear layer with 4-bit group-wise weights that multiplies on the packed codes.

    Buffers (exactly what is stored):
      packed_weight     (rows, in_features / 2) uint8: two codes a byte, in the byte order of this
                        CPU's kernels (it differs between AVX-512, AVX2 and the rest)
      scales_and_zeros  (in_features / group_size, rows, 2) bf16: scale, zero per group
      bias              (out_features,) in the Linear's dtype, or None
    rows is out_features rounded up to a multiple of 16, the kernel's row block (as torchao pads);
    the padding rows hold code 8, scale 1 and zero 0 (a zero weight), and the output drops them.

    weight[o, g*G + j] = (u - 8) * scale[g, o] + zero[g, o], u the unsigned code. The signed codes
    u - 8 and the grid are those of ``coursekit.quant.quantize(w, bits=4, symmetric=False,
    granularity="per_group", group_size=G)`` (as in ``W4A16Linear``): scale rounded to bf16 and
    zero = -zero_point * scale, rounded to bf16 (off the exact grid by at most 1/64 of a step).
    group_size must be one of 32, 64, 128, 256 and divide in_features, or construction refuses.

    The state dict holds the codes in a portable order instead (``coursekit.packing.pack`` of the
    (rows, in_features) codes, row after row, first code in the low nibble), so a checkpoint
    written on one CPU loads on any other; loading packs them for this CPU's kernels.
    """

    KERNEL = "aten int4 kernel"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = checks.check_int(in_features, "in_features", low=1)
        self.out_features = checks.check_int(out_features, "out_features", low=1)
        self.group_size = _check_int4_shape(in_features, group_size)
        rows = -(-out_features // INT4_ROW_BLOCK) * INT4_ROW_BLOCK          # padded, as torchao does
        n_groups = in_features // self.group_size
        self.register_buffer("packed_weight", torch.zeros(rows, in_features // 2, dtype=torch.uint8, device=device))
        sz = torch.zeros(n_groups, rows, 2, dtype=torch.bfloat16, device=device)
        sz[..., 0] = 1
        self.register_buffer("scales_and_zeros", sz)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self.path = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128) -> "Int4WeightLinear":
        """Quantize an ``nn.Linear`` to asymmetric int4 groups of ``group_size`` inputs.

        A meta Linear gives an empty layer (fill it with ``load_state_dict(sd, assign=True)``)."""
        w = _check_linear(linear).weight.detach()
        _check_int4_shape(linear.in_features, group_size, "linear.")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, group_size=group_size,
                    dtype=w.dtype, device=w.device)
        if w.is_meta:
            return layer
        q = quant.quantize(w, bits=4, symmetric=False, granularity="per_group", group_size=group_size)
        pad = layer.packed_weight.shape[0] - linear.out_features
        codes = F.pad(q.data.to(torch.int32) + 8, (0, 0, 0, pad), value=8)      # padding rows: weight 0
        layer.packed_weight.copy_(_pack_int4(codes))
        scale = q.scale.to(torch.bfloat16)                                     # (N, n_groups)
        zero = (-q.zero_point.float() * scale.float()).to(torch.bfloat16)
        layer.scales_and_zeros[:, :linear.out_features].copy_(torch.stack([scale, zero], -1).transpose(0, 1))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def _codes(self) -> torch.Tensor:
        return self.packed_weight

    def unsigned_codes(self) -> torch.Tensor:
        """The codes u in [0, 15], (out_features, in_features) uint8 (signed code = u - 8)."""
        if self.packed_weight.is_meta:
            return torch.empty(self.out_features, self.in_features, dtype=torch.uint8, device="meta")
        codes = _unpack_int4(self.packed_weight, self.group_size)[:self.out_features]
        return codes.to(self.packed_weight.device)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(u - 8) * scale + zero: (out_features, in_features), in ``dtype`` (default fp32)."""
        dtype = torch.float32 if dtype is None else dtype
        sz = self.scales_and_zeros[:, :self.out_features].float()             # (n_groups, N, 2)
        u = self.unsigned_codes().view(self.out_features, -1, self.group_size).float()
        w = (u - 8) * sz[..., 0].t().unsqueeze(-1) + sz[..., 1].t().unsqueeze(-1)
        return w.reshape(self.out_features, self.in_features).to(dtype)

    def _kernel_mm(self, x_bf16: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x_bf16, self.packed_weight, self.group_size,
                                                       self.scales_and_zeros)
        return y[:, :self.out_features]

    # The state dict holds the portable order (see the class doc); memory holds the kernel's.
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if not self.packed_weight.is_meta:
            codes = _unpack_int4(self.packed_weight, self.group_size)
            destination[prefix + "packed_weight"] = packing.pack(codes, 4).view(codes.shape[0], -1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "packed_weight"
        portable = state_dict.get(key)
        if isinstance(portable, torch.Tensor) and not portable.is_meta:
            codes = packing.unpack(portable.cpu(), 4, portable.numel() * 2).view(portable.shape[0], -1)
            state_dict[key] = _pack_int4(codes).to(portable.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _repr_extra(self) -> str:
        return f", int4 group_size={self.group_size}"


def _check_int4_shape(in_features: int, group_size, prefix: str = "") -> int:
    """group_size one the kernel takes, dividing in_features (out_features is padded instead).

    ``prefix`` ("linear.") names the features as the caller passed them."""
    group_size = checks.check_choice(group_size, "group_size", INT4_GROUP_SIZES)
    if in_features % group_size:
        fits = [g for g in INT4_GROUP_SIZES if in_features % g == 0]
        checks.fail("group_size", f"one of {INT4_GROUP_SIZES} that divides {prefix}in_features ({in_features})"
                    + (f": {fits}" if fits else "; none does, so this layer cannot take the int4 kernel"),
                    group_size)
    return group_size


# --------------------------------------------------------------------------- the last-level cache
#: What ``llc_bytes`` assumes when the system does not say: a common size on desktop and server CPUs.
ASSUMED_LLC_BYTES = 32 * 2 ** 20
_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}


def _parse_size(text: str) -> int | None:
    """ "32768K" or "1024 K" or "33554432" -> bytes; None if it is not a size."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text)
    return int(m.group(1)) * _UNITS[m.group(2)] if m else None


def _llc_from_sysfs(root: str) -> tuple[int, int] | None:
    """(level, bytes) of the highest data-holding cache of cpu0, from Linux's sysfs."""
    found = []
    try:
        indices = sorted(os.listdir(root))
    except OSError:
        return None
    for name in indices:
        if not name.startswith("index"):
            continue
        try:
            def read(field, name=name):
                with open(os.path.join(root, name, field)) as f:
                    return f.read().strip()
            level, kind, size = int(read("level")), read("type"), _parse_size(read("size"))
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size:
            found.append((level, size))
    return max(found) if found else None


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _llc_from_lscpu() -> tuple[int, int] | None:
    """(level, bytes of one instance) from ``lscpu -B``, whose sizes are totals over all instances."""
    out = _run("lscpu", "-B")
    for level in (3, 2):
        m = re.search(rf"^L{level} cache:\s*(\d+)\s*(?:\((\d+) instances?\))?", out, re.M)
        if m:
            return level, int(m.group(1)) // int(m.group(2) or 1)
    return None


def _llc_from_sysctl() -> tuple[int, int] | None:
    """(level, bytes) from macOS's sysctl (Apple silicon reports no L3: its L2 is the last level)."""
    for level in (3, 2):
        size = _parse_size(_run("sysctl", "-n", f"hw.l{level}cachesize"))
        if size:
            return level, size
    return None


def llc_bytes(sysfs_root: str = _SYSFS_CACHE) -> tuple[int, str]:
    """Size in bytes of one last-level cache (LLC) of this CPU, and where the number came from.

    Weights that fit in the LLC are read from it, not from memory, once they have been used: a
    speed test of memory-bound work must stream several times this many bytes (notebook 10 and
    ``benchmarks/decode.py`` do). The size is that of the cache cpu0 sees, shared by some or all
    cores. Read from Linux's sysfs, else ``lscpu -B``, else macOS's ``sysctl``; where none answers,
    ``ASSUMED_LLC_BYTES``, and the source says "assumed".
    """
    for source, read in (("sysfs", lambda: _llc_from_sysfs(sysfs_root)), ("lscpu", _llc_from_lscpu),
                         ("sysctl", _llc_from_sysctl)):
        found = read()
        if found:
            level, size = found
            return size, f"L{level}, from {source}"
    return ASSUMED_LLC_BYTES, f"unknown: assumed {ASSUMED_LLC_BYTES // 2 ** 20} MiB"
