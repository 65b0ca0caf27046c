"""How many bytes a model really takes: per parameter, per model, and at the peak of a call.

Three questions a learner asks before quantizing anything:

* "Will a 7B model fit on my 16 GB GPU?" -- ``bytes_per_param``, ``nbytes_for``, ``memory_table``.
* "How big is this model now, after quantization?" -- ``model_nbytes`` counts the storage that
  actually exists, including the int8 / packed 4-bit data and the scales hidden inside
  optimum-quanto's tensor subclasses. ``transformers``' ``get_memory_footprint()`` multiplies
  element counts by the *outer* dtype, so it still reports float sizes after quantization.
* "How much memory does this step need at its worst?" -- ``peak_memory``.
* "What besides the weights?" -- ``training_state_bytes``, ``saved_activation_bytes`` and
  ``zero_bytes_per_gpu``, exact counts from ``coursekit.training_memory``, re-exported here.

Units: 1 GB = 10^9 bytes everywhere in this module (the unit GPU vendors use: a "16 GB" T4 is
compared against 16e9 bytes). Formulas in this module count weights only, not activations,
optimizer state or the CUDA context.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import sys
import threading
import time
from dataclasses import dataclass

import torch

from . import checks
from .training_memory import (ZERO_STAGES, _storage_key_and_nbytes, saved_activation_bytes, training_state_bytes,
                              zero_bytes_per_gpu)

__all__ = [
    "bytes_per_param", "nbytes_for", "format_bytes", "MemoryRow", "memory_table",
    "format_memory_table", "WEIGHT_SHARE", "model_nbytes", "tensor_nbytes", "peak_memory", "GB",
    "MemoryTrace", "memory_trace", "memory_trace_in_new_process", "training_state_bytes",
    "saved_activation_bytes", "ZERO_STAGES", "zero_bytes_per_gpu",
]

GB = 1e9

# Bits per element for the names a learner types. int4 / int2 are not torch dtypes: they exist
# only packed into bytes, but they are exactly the formats quantization is about.
_BITS_BY_NAME = {
    "fp32": 32, "float32": 32, "float": 32, "fp16": 16, "float16": 16, "half": 16,
    "bf16": 16, "bfloat16": 16, "fp8": 8, "float8": 8, "int32": 32, "int16": 16,
    "int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "int2": 2, "uint2": 2, "int1": 1,
}


def _bits_of(dtype_or_bits) -> int:
    checks.check_instance(dtype_or_bits, "dtype_or_bits", (torch.dtype, str, int),
                          "a torch.dtype, an int number of bits or a name like 'fp16' / 'int4'")
    if isinstance(dtype_or_bits, torch.dtype):
        # Sub-byte torch dtypes (torch.uint4, torch.int2, ...) report a whole byte as itemsize.
        match = re.fullmatch(r"torch\.u?int([1-7])", str(dtype_or_bits))
        return int(match.group(1)) if match else dtype_or_bits.itemsize * 8
    if isinstance(dtype_or_bits, str):
        name = dtype_or_bits.strip().lower().removeprefix("torch.")
        if name in _BITS_BY_NAME:
            return _BITS_BY_NAME[name]
        checks.fail("dtype_or_bits", f"one of {', '.join(sorted(_BITS_BY_NAME))}", repr(dtype_or_bits))
    return checks.check_int(dtype_or_bits, "dtype_or_bits", low=1)


def bytes_per_param(dtype_or_bits) -> float:
    """Bytes one parameter takes: 4.0 for fp32, 2.0 for bf16, 1.0 for int8, 0.5 for int4.

    Accepts a torch.dtype, a number of bits (an int >= 1), or a name ("fp32", "fp16", "bf16", "int8", "int4").
    Returns a float because sub-byte formats store fractions of a byte per parameter.
    """
    return _bits_of(dtype_or_bits) / 8


def nbytes_for(n_params, dtype_or_bits) -> float:
    """Bytes for ``n_params`` parameters (a number >= 0) in ``dtype_or_bits``: weights only, no scales."""
    checks.check_number(n_params, "n_params", low=0)
    return n_params * bytes_per_param(dtype_or_bits)


def format_bytes(n) -> str:
    """Human-readable size with decimal units: ``format_bytes(13.04e9) == '13.04 GB'``.

    Decimal (1 KB = 1000 B) to match how GPU memory is advertised; two decimals above bytes.
    n: a number >= 0.
    """
    checks.check_number(n, "n", low=0)
    if n < 1000:
        return f"{n:g} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.2f} {unit}"
    return f"{n / 1000:.2f} TB"


@dataclass(frozen=True)
class MemoryRow:
    """One line of the "does it fit?" calculator."""

    dtype: str
    bytes_per_param: float
    nbytes: float
    fits: bool


#: The course's working rule for "does it fit?": the weights may take at most this share of the
#: GPU's memory; activations, the KV cache and the CUDA context need the rest (notebooks 01 and 04).
WEIGHT_SHARE = 0.8


def memory_table(n_params, dtypes=("fp32", "fp16", "bf16", "int8", "int4"), device_gb=16,
                 weight_share=WEIGHT_SHARE):
    """Weight memory of an ``n_params`` model in each dtype, and whether it fits on the device.

    ``device_gb`` is in GB of 10^9 bytes (a T4 is 16). A row fits when its weights take at most
    ``weight_share`` of the device (the course's 80 % rule): a model whose weights fill the whole
    GPU has no room left to run.
    """
    checks.check_number(device_gb, "device_gb", positive=True)
    checks.check_number(weight_share, "weight_share", positive=True, high=1)
    rows = []
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        nbytes = nbytes_for(n_params, dtype)
        rows.append(MemoryRow(name, bytes_per_param(dtype), nbytes, nbytes <= weight_share * device_gb * GB))
    return rows


def format_memory_table(rows: list[MemoryRow], device_gb=16, weight_share=WEIGHT_SHARE) -> str:
    """Aligned plain-text view of ``memory_table`` rows, stable for notebook output comparison."""
    lines = [("dtype", "bytes/param", "weights", f"fits ({weight_share:.0%} of {device_gb:g} GB)")]
    lines += [(r.dtype, f"{r.bytes_per_param:g}", format_bytes(r.nbytes), "yes" if r.fits else "no")
              for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join(
        "  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])
        for line in lines
    )


# ---------------------------------------------------------------------------------------------
# The true size of a model
# ---------------------------------------------------------------------------------------------

def _plain_tensors(t: torch.Tensor):
    """Yield the plain tensors that hold ``t``'s data, unwrapping tensor subclasses recursively.

    optimum-quanto's quantized weights are wrapper subclasses: the outer tensor *looks* like a
    float tensor (dtype, shape) but owns no real memory; its data lives in inner tensors named by
    ``__tensor_flatten__()`` (e.g. ``_data`` int8 and ``_scale``; for 4-bit a ``PackedTensor``
    whose own ``_data`` is uint8 holding two values per byte). Only the leaves are real storage.
    """
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is None:
        yield t
        return
    inner_names, _ = t.__tensor_flatten__()
    for name in inner_names:
        yield from _plain_tensors(getattr(t, name))


def tensor_nbytes(t: torch.Tensor) -> int:
    """Bytes of storage behind one tensor, looking inside quantized tensor subclasses."""
    checks.check_tensor(t, "t")
    seen = {}
    for leaf in _plain_tensors(t):
        key, nbytes = _storage_key_and_nbytes(leaf)
        seen[key] = nbytes
    return sum(seen.values())


def model_nbytes(model: torch.nn.Module) -> int:
    """Bytes of storage held by a model's parameters and buffers, each storage counted once.

    Unlike ``get_memory_footprint()``, this sees through quantized tensor subclasses, so a model
    after ``quantize(model, weights=qint8); freeze(model)`` reports its int8 data plus scales.
    Tied weights and buffers that share memory are counted once; a uint8 buffer that packs two
    4-bit values per byte naturally counts half a byte per value. bitsandbytes' weights keep their
    scales outside the parameter (``_bnb_scale_tensors``): those are counted too.
    """
    checks.check_instance(model, "model", torch.nn.Module, "a torch.nn.Module")
    seen = {}
    for t in list(model.parameters()) + list(model.buffers()):
        for leaf in [*_plain_tensors(t), *_bnb_scale_tensors(t)]:
            key, nbytes = _storage_key_and_nbytes(leaf)
            seen[key] = nbytes
    return sum(seen.values())


def _bnb_scale_tensors(t: torch.Tensor):
    """The tensors a bitsandbytes weight needs besides its own data, which are not parameters.

    ``Int8Params`` keeps one float32 scale per row in ``.SCB`` (and ``.CB``, the int8 data itself);
    ``Params4bit`` keeps ``.quant_state``: float32 ``absmax`` per block, the 16-entry ``code``
    table, and with double quantization an ``offset`` and a nested ``state2`` of the same kind.
    """
    for name in ("CB", "SCB"):
        extra = getattr(t, name, None)
        if isinstance(extra, torch.Tensor):
            yield extra
    state = getattr(t, "quant_state", None)
    while state is not None:
        for name in ("absmax", "code", "offset"):
            extra = getattr(state, name, None)
            if isinstance(extra, torch.Tensor):
                yield extra
        state = getattr(state, "state2", None)


# ---------------------------------------------------------------------------------------------
# Peak memory of a call
# ---------------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    """Resident set size of this process now, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _max_rss_bytes() -> int:
    """Peak resident size of this process's own memory since it started.

    On Linux this is VmHWM from /proc: ``getrusage``'s ru_maxrss survives ``exec``, so a process
    started from a large one (a notebook kernel from pytest, a benchmark's fresh process) reports
    its parent's peak (measured: 2,589 MB for a job that peaks at 1,470 MB). macOS reports bytes.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _RssSampler(threading.Thread):
    """Reads the process RSS every ``interval`` seconds and remembers the largest value."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _rss_bytes()
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss_bytes())
        return self.peak


def _peak_cpu(fn, args, kwargs, interval):
    gc.collect()
    if os.path.exists("/proc/self/statm"):
        before = _rss_bytes()
        sampler = _RssSampler(interval)
        sampler.start()
        try:
            result = fn(*args, **kwargs)
        finally:
            peak = sampler.stop()
        return result, max(0, peak - before)
    # No /proc (macOS, Windows): the lifetime high-water mark only moves when this call sets a
    # new record, so the answer is a lower bound (0 if the process was bigger earlier).
    before = _max_rss_bytes()
    result = fn(*args, **kwargs)
    return result, max(0, _max_rss_bytes() - before)


def _peak_cuda(fn, args, kwargs, device):
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    result = fn(*args, **kwargs)
    torch.cuda.synchronize(device)
    return result, max(0, torch.cuda.max_memory_allocated(device) - start)


@dataclass
class MemoryTrace:
    """Memory over the time of one call, relative to just before it (bytes; seconds since the start).

    ``private`` is memory only this process can use: on a CPU the resident anonymous memory
    (RssAnon), on a GPU the bytes PyTorch allocated. ``total`` adds what the OS can drop and re-read
    at any time: on a CPU the pages of memory-mapped files (VmRSS), on a GPU the caching allocator's
    reserve. The difference is what a safetensors checkpoint read through mmap costs a CPU.
    """
    seconds: list
    private: list
    total: list

    @property
    def peak_private(self) -> int:
        return max(self.private, default=0)

    @property
    def peak_total(self) -> int:
        return max(self.total, default=0)


def _status_bytes(*keys):
    """Values of /proc/self/status lines (kB there) in bytes, in the order of `keys`."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                found[name] = int(rest.split()[0]) * 1024
    return [found.get(k, 0) for k in keys]


def memory_trace(fn, *args, device=None, interval=0.002, **kwargs):
    """Run ``fn(*args, **kwargs)`` and return ``(result, MemoryTrace)``: memory sampled while it runs.

    A background thread samples every ``interval`` seconds, so a spike shorter than that can be
    missed; the result is kept alive until returned. Needs /proc on a CPU (Linux, Colab).
    """
    if not callable(fn):
        checks.fail("fn", "a callable to measure", type(fn).__name__, TypeError)
    checks.check_number(interval, "interval", positive=True)
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        def sample():
            return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    elif os.path.exists("/proc/self/status"):
        def sample():
            return tuple(_status_bytes("RssAnon", "VmRSS"))
    else:
        checks.fail("device", "a CUDA device, or a CPU with /proc (Linux)", str(device))
    gc.collect()
    base = sample()
    trace = MemoryTrace([], [], [])
    done = threading.Event()
    start = time.perf_counter()

    def run():
        while True:
            private, total = sample()
            trace.seconds.append(time.perf_counter() - start)
            trace.private.append(private - base[0])
            trace.total.append(total - base[1])
            if done.wait(interval):
                return

    sampler = threading.Thread(target=run, daemon=True)
    sampler.start()
    try:
        result = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        done.set()
        sampler.join()
    private, total = sample()      # the state at the end, after the last sample of the loop
    trace.seconds.append(time.perf_counter() - start)
    trace.private.append(private - base[0])
    trace.total.append(total - base[1])
    return result, trace


def memory_trace_in_new_process(expression: str, setup: str = "", device=None, interval=0.002,
                                timeout: float = 300) -> MemoryTrace:
    """`memory_trace` of one Python expression, evaluated in a fresh Python process.

    A process that already loaded and freed models reuses that memory, and file pages it has read
    stay mapped: measured again in the same process, a second route looks cheaper than it is. A
    new process starts clean. ``setup`` runs first (imports), ``expression`` is then measured;
    both see ``device``.
    """
    import json
    import subprocess

    for value, name in ((expression, "expression"), (setup, "setup")):
        if not isinstance(value, str):
            checks.fail(name, "Python source code as a string", type(value).__name__, TypeError)
    device = str(torch.device("cpu" if device is None else device))
    program = (
        "import json, sys, torch\n"
        "from coursekit import memory\n"
        f"device = torch.device({device!r})\n"
        f"{setup}\n"
        f"result, trace = memory.memory_trace(lambda: {expression}, device=device, interval={interval!r})\n"
        "print('\\n' + json.dumps([trace.seconds, trace.private, trace.total]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"measuring {expression!r} in a new process failed:\n{tail}")
    seconds, private, total = json.loads(done.stdout.strip().splitlines()[-1])
    return MemoryTrace(seconds, private, total)


def peak_memory(fn, *args, device=None, interval=0.001, **kwargs):
    """Run ``fn(*args, **kwargs)`` and return ``(result, peak_bytes)``, the most extra memory used.

    * CUDA (``device="cuda"`` or a CUDA torch.device): exact, from PyTorch's caching allocator
      (``max_memory_allocated`` minus what was allocated before the call).
    * CPU (``device=None`` or ``"cpu"``, the default because ``from_pretrained`` loads to CPU):
      there is no allocator counter, so a background thread samples the process resident set
      size (RSS, from /proc/self/statm) every ``interval`` seconds while ``fn`` runs. This is an
      approximation: it is accurate to a few MB, sees memory from any library (not only torch),
      counts memory-mapped files once their pages are read, and may miss a spike shorter than
      the sampling interval. Without /proc it falls back to the process's lifetime peak.

    ``device`` and ``interval`` are consumed here and not passed on to ``fn``. The result is kept
    alive until returned, so memory that the result still holds counts towards the peak.
    """
    if not callable(fn):
        checks.fail("fn", "a callable to measure", type(fn).__name__, TypeError)
    checks.check_number(interval, "interval", positive=True)
    try:
        device = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError):
        checks.fail("device", "'cpu', 'cuda', 'cuda:N' or a torch.device", repr(device))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            checks.fail("device", "a device this machine has (CUDA is not available)", str(device))
        return _peak_cuda(fn, args, kwargs, device)
    if device.type != "cpu":
        checks.fail("device", "a CPU or CUDA device", str(device))
    return _peak_cpu(fn, args, kwargs, interval)
