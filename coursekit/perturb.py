"""Another CPU, simulated: nudge every loaded model's weights by a factor 1 + eps * N(0, 1).

Why this exists. A notebook's stored outputs are compared with a fresh run on the learner's machine,
and float kernels differ from CPU to CPU in the last digits (another summation order, FMA or not,
AVX2 against AVX-512 against AMX). A printed number must survive that. Most do; a few do not: a
minimum over sentences, a count of values on one side of a rounding boundary, anything after a
rounding step that a last-digit change can tip. Running the notebooks on every CPU is impossible,
but a drift a few times larger than any kernel set's can be made on purpose, on this machine:

    COURSEKIT_PERTURB=1e-6 make test-perturbed

With ``COURSEKIT_PERTURB`` set, importing coursekit wraps the ``safe_open`` that transformers,
accelerate and optimum-quanto read checkpoints with, so that every float tensor of every model loaded from a file (the encoder, the
course LM, any Hub model) is multiplied, as it is read, by ``1 + eps * N(0, 1)``. The nudge happens
at the file, before anything else sees the weights, so every route from one file stays consistent:
a model quantized while it loads (``QuantoConfig``, bitsandbytes) starts from the same nudged
weights as the fp32 copy a notebook quantizes itself, and a bf16 load is the nudged fp32 rounded.
The noise of a tensor depends only on its name in the file and ``COURSEKIT_PERTURB_SEED`` (default
0), so a perturbed run is itself reproducible and two loads of one file agree.

How eps was chosen (notebooks/AUTHORING.md has the table): on the course's encoder and LM, the
kernel sets `make test-kernels` emulates move the outputs by a relative 2e-7 (logits) to 8e-7
(embeddings) from the native kernels; weights nudged by eps = 1e-7 move them about as much, and
eps = 1e-6 three to five times more. So 1e-6 is the default: a cell that passes under it has
margin against a CPU nobody here has.

Weights stored in bf16 or fp16 change by less than half a unit of their last place at this eps and
stay as they are, as they would on another CPU (loading is exact); drift in bf16 arithmetic is what
`make test-kernels` emulates.
"""

from __future__ import annotations

import os
import time
import zlib

import torch

from .checks import check_number, fail

__all__ = ["ENV", "SEED_ENV", "DEFAULT_EPS", "perturb_", "install", "installed_eps"]

ENV = "COURSEKIT_PERTURB"
SEED_ENV = "COURSEKIT_PERTURB_SEED"
DEFAULT_EPS = 1e-6

_installed: float | None = None


@torch.no_grad()
def perturb_(model: torch.nn.Module, eps: float = DEFAULT_EPS, seed: int = 0) -> int:
    """Multiply every floating-point parameter of ``model`` by ``1 + eps * N(0, 1)``, in place.

    Each parameter's noise comes from its own generator, seeded by ``seed`` and the parameter's
    name, so the result does not depend on the order in which models or layers are loaded.
    Returns how many parameters were changed. Integer and quantized storage is left alone.
    """
    if not isinstance(model, torch.nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__, TypeError)
    eps = check_number(eps, "eps", low=0.0)
    changed = 0
    for name, p in model.named_parameters():
        if type(p.data) is not torch.Tensor or not p.is_floating_point() or p.device.type == "meta":
            continue   # int8/NF4/quanto storage: a subclass or an integer tensor, not float weights
        noise = torch.randn(p.shape, generator=_generator(name, int(seed)), dtype=torch.float32)
        p.copy_((p.float() * (1 + eps * noise).to(p.device)).to(p.dtype))
        changed += 1
    return changed


def installed_eps() -> float | None:
    """The eps in force in this process, or None when models load unperturbed."""
    return _installed


#: Where the libraries the course uses keep their own reference to safetensors' ``safe_open``:
#: transformers' loader, accelerate's offload (weights read back lazily from the original file) and
#: optimum-quanto's reload of a saved quantized model.
_SAFE_OPEN_USERS = ("transformers.modeling_utils", "transformers.integrations.accelerate",
                    "accelerate.utils.modeling", "accelerate.utils.offload",
                    "optimum.quanto.models.shared_dict")


def install(eps: float | None = None, seed: int | None = None) -> float:
    """Nudge every float tensor read from a safetensors file that existed before this call.

    A file written after it (a quantized model the notebook saved, an offload folder) is read
    back as it was written: on another CPU, too, a saved file is a faithful copy. ``eps`` and
    ``seed`` default to the ``COURSEKIT_PERTURB`` / ``COURSEKIT_PERTURB_SEED`` environment
    variables. Installing twice keeps the first one. Returns the eps in force.
    """
    global _installed
    if eps is None:
        eps = _env_float(ENV, os.environ.get(ENV, ""))
    if seed is None:
        seed = int(_env_float(SEED_ENV, os.environ.get(SEED_ENV, "0")))
    eps = check_number(eps, "eps", low=0.0)
    if _installed is not None:
        return _installed
    import importlib

    import safetensors

    original, since = safetensors.safe_open, time.time()

    def safe_open(*args, **kwargs):
        handle = original(*args, **kwargs)
        path = args[0] if args else kwargs.get("filename")
        try:
            older = os.path.getmtime(path) < since
        except (OSError, TypeError):
            older = False
        return _NudgedFile(handle, eps, int(seed)) if older else handle

    safetensors.safe_open = safe_open
    for name in _SAFE_OPEN_USERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "safe_open", None) is original:
            module.safe_open = safe_open
    _installed = eps
    return eps


def _nudged(name: str, tensor: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    if not tensor.is_floating_point():
        return tensor
    noise = torch.randn(tensor.shape, generator=_generator(name, seed), dtype=torch.float32)
    return (tensor.float() * (1 + eps * noise).to(tensor.device)).to(tensor.dtype)


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


class _NudgedFile:
    """A safetensors file handle whose float tensors come back nudged (see ``install``)."""

    def __init__(self, handle, eps: float, seed: int):
        self._handle, self._eps, self._seed = handle, eps, seed

    def __enter__(self):
        self._handle.__enter__()
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

    def get_tensor(self, name):
        return _nudged(name, self._handle.get_tensor(name), self._eps, self._seed)

    def get_slice(self, name):
        return _NudgedSlice(name, self._handle.get_slice(name), self)

    def __getattr__(self, attr):          # keys(), metadata(), offset_keys(), ...
        return getattr(self._handle, attr)


class _NudgedSlice:
    """A lazy slice of one tensor: the whole tensor is nudged, then indexed, so every part of a
    sharded read gets the noise the whole tensor would."""

    def __init__(self, name, inner, file: _NudgedFile):
        self._name, self._inner, self._file = name, inner, file

    def __getitem__(self, index):
        whole = _nudged(self._name, self._inner[...], self._file._eps, self._file._seed)
        return whole[index]

    def __getattr__(self, attr):          # get_shape(), get_dtype()
        return getattr(self._inner, attr)


def _env_float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        fail(name, "a number such as 1e-6", repr(value))
