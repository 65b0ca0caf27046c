"""Which blocks of a transformer are sensitive to quantization: a sweep, one block at a time.

Mixed precision keeps the blocks that quantization hurts most in higher precision. To find them,
quantize one block, leave the rest in float, score the model, and repeat for every block. Done
naively that is one full forward pass per block. But when only block i is quantized, blocks
0..i-1 compute exactly what they compute in the float model, so their output can be computed once
and replayed: the sweep then costs about half as much (blocks 0..i-1 are skipped for block i).

    rises = sweep(model, tokenizer, slices, quantized)    # {i: SlicePerplexity with block i swapped}
    with blocks_replaced(model, {i: quantized[i] for i in chosen}):
        ...evaluate the model with those blocks swapped in...

``quantized`` holds one replacement per block (e.g. a deep copy with its weights put on a grid).
Scores are those of ``coursekit.models.perplexity_slices`` on the same slices, so
``coursekit.models.compare`` gives each effect with its noise floor.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import checks
from ..models.evaluation import SlicePerplexity, perplexity_slices
from .sequential import transformer_blocks

__all__ = ["blocks_replaced", "sweep"]


def _check_replacements(blocks: nn.ModuleList, replacements) -> dict:
    if not isinstance(replacements, dict):
        checks.fail("replacements", "a dict {block index: module}", type(replacements).__name__, TypeError)
    for i, m in replacements.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(blocks):
            checks.fail("replacements", f"block indices from 0 to {len(blocks) - 1}", repr(i))
        if not isinstance(m, nn.Module):
            checks.fail(f"replacements[{i}]", "an nn.Module (a block)", type(m).__name__, TypeError)
    return replacements


@contextlib.contextmanager
def blocks_replaced(model: nn.Module, replacements: dict):
    """Inside the ``with``, block i of ``model`` is ``replacements[i]``; afterwards the originals
    are back, also after an exception."""
    _, blocks = transformer_blocks(model)
    replacements = _check_replacements(blocks, replacements)
    originals = {i: blocks[i] for i in replacements}
    try:
        for i, m in replacements.items():
            blocks[i] = m
        yield model
    finally:
        for i, m in originals.items():
            blocks[i] = m


class _Replay(nn.Module):
    """Stands in for block 0: returns what block ``i - 1`` of the float model returned, one
    batch after the other (perplexity_slices runs the slices in the same batches every time)."""

    def __init__(self, outputs: list):
        super().__init__()
        self.outputs, self.calls = outputs, 0

    def forward(self, hidden_states, *args, **kwargs):
        out = self.outputs[self.calls]
        self.calls += 1
        return out


class _PassOn(nn.Module):
    """Stands in for blocks 1..i-1: hands its input on untouched (the replay already holds their work).

    That is right only for blocks that return their hidden states as one tensor, as transformers
    5's decoder layers do; ``_block_outputs`` refuses a model whose blocks return anything else.
    """

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@torch.no_grad()
def _block_outputs(model, blocks, tokenizer, slices, tokens, batch_size, keep):
    """The float model's score on the slices, and what the blocks in ``keep`` returned, batch by batch
    (only those a replay needs: on SmolLM2 every block's outputs took about 70 MB for 4 x 256 tokens)."""
    outputs = {i: [] for i in keep}
    hooks = [blocks[i].register_forward_hook(lambda m, a, out, i=i: outputs[i].append(out)) for i in keep]
    try:
        base = perplexity_slices(model, tokenizer, slices, tokens, batch_size=batch_size)
    finally:
        for h in hooks:
            h.remove()
    kinds = {type(o).__name__ for per_block in outputs.values() for o in per_block if not isinstance(o, torch.Tensor)}
    if kinds:
        raise TypeError(f"sweep replays block outputs and needs blocks that return their hidden states as "
                        f"one tensor (transformers 5 decoder layers do); this model's blocks return {sorted(kinds)}")
    return base, outputs


def sweep(model: nn.Module, tokenizer, slices, quantized, tokens: int | None = 512,
          batch_size: int | None = None) -> tuple[SlicePerplexity, dict[int, SlicePerplexity]]:
    """Score ``model`` with each block in turn replaced by ``quantized[i]``, all others float.

    Returns (float score, {block index: score with that block replaced}), each from
    ``perplexity_slices(model, tokenizer, slices, tokens)``. Blocks before the replaced one are not
    run again: their float outputs are replayed (the same numbers, up to float summation order).
    ``quantized`` is a list with one module per block, or a dict {index: module} to sweep only
    those blocks.
    """
    _, blocks = transformer_blocks(model)
    if isinstance(quantized, (list, tuple)):
        if len(quantized) != len(blocks):
            checks.fail("quantized", f"one module per block ({len(blocks)})", f"{len(quantized)} modules")
        quantized = dict(enumerate(quantized))
    quantized = _check_replacements(blocks, quantized)
    base, outputs = _block_outputs(model, blocks, tokenizer, slices, tokens, batch_size,
                                   sorted({i - 1 for i in quantized if i > 0}))
    scores = {}
    for i, q in sorted(quantized.items()):
        swap = {j: _PassOn() for j in range(1, i)}
        if i > 0:
            swap[0] = _Replay(outputs[i - 1])
        swap[i] = q
        with blocks_replaced(model, swap):
            scores[i] = perplexity_slices(model, tokenizer, slices, tokens, batch_size=batch_size)
    return base, scores
