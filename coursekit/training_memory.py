"""What a model needs memory for besides its weights: training state, saved activations, ZeRO.

Notebook 01 measures the rest of the bill on the course LM. Everything here is an exact count of
tensor bytes, not a sample of process memory: the same on every machine, so a notebook can print
it and compare it. ``coursekit.memory`` re-exports these names.

* ``training_state_bytes(model, optimizer)``: weights, gradients and optimizer state, in bytes.
* ``saved_activation_bytes(fn, ...)``: what autograd keeps for the backward pass of one call.
* ``zero_bytes_per_gpu(n_params, n_gpus, stage)``: ZeRO's sharding of mixed-precision Adam, as
  arithmetic.
"""

from __future__ import annotations

import torch

from . import checks

__all__ = ["training_state_bytes", "saved_activation_bytes", "ZERO_STAGES", "zero_bytes_per_gpu"]


def _storage_key_and_nbytes(t: torch.Tensor):
    """(a key that is the same for every view of one buffer, the buffer's bytes)."""
    storage = t.untyped_storage()
    ptr = storage.data_ptr()
    # meta tensors and empty storages have no address: each counts on its own
    return ((t.device, ptr) if ptr else ("id", id(t))), storage.nbytes()


def _storages_nbytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``: a buffer shared by several counts once."""
    return sum(dict(_storage_key_and_nbytes(t) for t in tensors).values())


def training_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Exact bytes of what training keeps between steps: ``{"weights", "gradients", "optimizer state"}``.

    Why not a memory sampler: these are plain tensors, so summing their storages is exact and the
    same on every machine, while RSS moves by megabytes with the allocator. Shared storages (tied
    weights) count once; a gradient not yet computed (``None``) counts nothing; the optimizer's
    state is every tensor in ``optimizer.state`` (for Adam: both moments and the step counter).
    """
    checks.check_instance(model, "model", torch.nn.Module, "a torch.nn.Module")
    checks.check_instance(optimizer, "optimizer", torch.optim.Optimizer, "a torch.optim.Optimizer")
    params = list(model.parameters())
    state = [t for per_param in optimizer.state.values() for t in per_param.values()
             if isinstance(t, torch.Tensor)]
    return {"weights": _storages_nbytes(params),
            "gradients": _storages_nbytes(p.grad for p in params if p.grad is not None),
            "optimizer state": _storages_nbytes(state)}


def saved_activation_bytes(fn, *args, exclude=None, **kwargs):
    """Run ``fn(*args, **kwargs)``; return ``(result, bytes)`` autograd saved for the backward pass.

    Why: the activations kept for backward are what grows with batch and sequence length, and
    counting the tensors autograd saves (``saved_tensors_hooks``) is exact and deterministic where
    sampling RSS is not. Each storage counts once (a tensor saved by two operations, or views of
    one buffer). ``exclude`` (a module, or None) leaves out its parameters and buffers: a linear
    layer saves its weight too, but the weight exists with or without a backward pass.
    Activation checkpointing (``torch.utils.checkpoint``) saves only each block's inputs; the
    tensors recomputed in the backward pass are not saved, so they are not counted.
    """
    if not callable(fn):
        checks.fail("fn", "a callable to measure", type(fn).__name__, TypeError)
    if exclude is not None:
        checks.check_instance(exclude, "exclude", torch.nn.Module, "a torch.nn.Module or None")
    skip = set() if exclude is None else {
        _storage_key_and_nbytes(t)[0] for t in [*exclude.parameters(), *exclude.buffers()]}
    saved = {}

    def pack(t):
        key, nbytes = _storage_key_and_nbytes(t)
        if key not in skip:
            saved[key] = nbytes
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn(*args, **kwargs)
    return result, sum(saved.values())


#: What ZeRO (DeepSpeed's Zero Redundancy Optimizer) splits across the data-parallel GPUs at each
#: stage; stage 0 is plain data parallelism, where every GPU holds a full copy of everything.
ZERO_STAGES = {0: "nothing", 1: "optimizer state", 2: "optimizer state and gradients",
               3: "optimizer state, gradients and weights"}


def zero_bytes_per_gpu(n_params, n_gpus, stage, weight_bytes=2, grad_bytes=2, optimizer_bytes=12):
    """Bytes of training state on each of ``n_gpus`` GPUs under ZeRO ``stage`` (0 to 3).

    The default split is mixed-precision Adam, 16 bytes per parameter: 2 for the bf16/fp16
    weights, 2 for their gradients and 12 for the optimizer (fp32 master weights and two fp32
    moments). Each stage shards one more part ``n_gpus`` ways: 1 the optimizer state, 2 the
    gradients too, 3 the weights too. Activations are not included.
    """
    checks.check_number(n_params, "n_params", low=0)
    n_gpus = checks.check_int(n_gpus, "n_gpus", low=1)
    stage = checks.check_choice(stage, "stage", tuple(ZERO_STAGES))
    for value, name in ((weight_bytes, "weight_bytes"), (grad_bytes, "grad_bytes"),
                        (optimizer_bytes, "optimizer_bytes")):
        checks.check_number(value, name, low=0)
    parts = [(optimizer_bytes, 1), (grad_bytes, 2), (weight_bytes, 3)]
    return n_params * sum(nbytes / n_gpus if stage >= sharded_from else nbytes
                          for nbytes, sharded_from in parts)
