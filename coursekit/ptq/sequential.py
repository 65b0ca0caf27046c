"""Block by block: each transformer block calibrated on what the quantized blocks before it output.

``calibrate`` records every layer's statistics in one pass of the float model. GPTQ's paper (and
the reference code) instead walks the blocks in order: block k is calibrated on the outputs of
blocks 0..k-1 *as already quantized*, so its compensation also absorbs the errors that arrive from
below. Running the whole model again for every block would cost a forward pass per block; instead
the inputs of the first block are caught once, and each block turns its inputs into the next
block's, twice: once in float to record its layers' statistics, once quantized to hand on.

    for names, stats in blockwise(model, calibration):
        ...quantize the layers ``names`` using ``stats`` (name -> InputStats)...

The generator resumes after the loop body, so the outputs it hands on come from the block as the
body left it. Memory is one block's statistics and the hidden states of the calibration texts.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from ..models.devices import model_device
from .calibration import Calibration, Recorder

#: Keyword arguments of a block call that must not be replayed: a cache would grow at every replay.
_NOT_REPLAYED = ("past_key_values", "past_key_value", "use_cache")


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of blocks: the nn.ModuleList that holds the most linear layers."""
    best = ("", None, 0)
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 1:
            n = sum(isinstance(x, nn.Linear) for x in m.modules())
            if n > best[2]:
                best = (name, m, n)
    if best[1] is None:
        checks.fail("model", "a transformer with a list of blocks (model.layers, encoder.layer)",
                    type(model).__name__)
    return best[0], best[1]


class _Caught(Exception):
    """Raised by the hook on the first block once it has its inputs: the rest need not run."""


@torch.no_grad()
def _first_block_inputs(model: nn.Module, block: nn.Module, calibration: Calibration) -> list:
    """[(args, kwargs, attention_mask)] of the first block, one entry per calibration batch."""
    caught = []

    def catch(module, args, kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_REPLAYED}
        caught.append([args, kwargs, None])
        raise _Caught

    handle = block.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in calibration.source.batches(model_device(model)):
            try:
                model(**batch)
            except _Caught:
                caught[-1][2] = batch["attention_mask"]
    finally:
        handle.remove()
    return caught


def _hand_on(args, kwargs, output):
    """The next block's (args, kwargs): this block's hidden states in place of its own."""
    hidden = output[0] if isinstance(output, (tuple, list)) else output
    if args:
        return (hidden,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@torch.no_grad()
def blockwise(model: nn.Module, calibration: Calibration):
    """Yield (names, stats) for each block in order, then pass on the block's outputs as the body
    left it. Layers of ``calibration`` outside every block are yielded last, with the statistics
    ``calibration`` recorded in one float pass."""
    if calibration.source is None:
        checks.fail("calibration", "a Calibration from ptq.calibrate (the sequential mode runs its texts "
                    "again)", "one built from inputs")
    prefix, blocks = transformer_blocks(model)
    inputs = _first_block_inputs(model, blocks[0], calibration)
    done = set()
    for i, block in enumerate(blocks):
        here = f"{prefix}.{i}." if prefix else f"{i}."
        names = [n for n in calibration.names if n.startswith(here)]
        with Recorder(model, names, calibration.shared_inputs()) as recorder:
            for args, kwargs, mask in inputs:
                recorder.batch(mask)
                block(*args, **kwargs)
        stats, _ = recorder.result()
        yield names, stats
        done.update(names)
        for entry in inputs:                          # the block as the caller left it: quantized
            args, kwargs, _ = entry
            entry[0], entry[1] = _hand_on(args, kwargs, block(*args, **kwargs))
    rest = [n for n in calibration.names if n not in done]
    if rest:
        yield rest, {n: calibration.stats[n] for n in rest}
