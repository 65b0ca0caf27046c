"""What this CPU offers low-precision code: its instruction-set features and its last-level cache.

Kept apart from the kernels' layers so that reading the CPU's flags (``coursekit.models.devices``,
notebook 10's setup) imports no layer code: this module needs only the standard library and torch.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass

import torch

__all__ = ["CPUFeatures", "cpu_flags", "cpu_features", "llc_bytes", "ASSUMED_LLC_BYTES"]


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
