"""coursekit.ptq.sensitivity: the sweep's replay gives the scores of swapping each block directly."""
import copy

import pytest
import torch

from coursekit import models, quant
from coursekit.ptq import sensitivity


@pytest.fixture(scope="module")
def lm():
    return models.load_lm()


def _rounded(block, bits=2):
    q = copy.deepcopy(block)
    for m in q.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data = quant.fake_quantize(m.weight.data, bits=bits, granularity="per_channel", axis=0)
    return q


def test_sweep_scores_equal_swapping_each_block_in_full(lm):
    model, tok = lm
    slices = models.heldout_slices(tok, n_slices=3, tokens=64)
    blocks = model.model.layers
    quantized = [_rounded(b) for b in blocks]
    base, scores = sensitivity.sweep(model, tok, slices, quantized, tokens=64, batch_size=2)
    assert base.nll == models.perplexity_slices(model, tok, slices, 64).nll
    assert sorted(scores) == list(range(len(blocks)))
    for i, q in enumerate(quantized):
        with sensitivity.blocks_replaced(model, {i: q}):
            direct = models.perplexity_slices(model, tok, slices, 64, batch_size=2)
        assert scores[i].nll == pytest.approx(direct.nll, rel=1e-6)
        assert scores[i].pooled != base.pooled            # 2-bit weights change every block's score
    assert all(b is o for b, o in zip(model.model.layers, blocks))   # the float blocks are back


def test_sweep_of_chosen_blocks_and_the_originals_come_back_after_an_error(lm):
    model, tok = lm
    slices = models.heldout_slices(tok, n_slices=2, tokens=32)
    first = model.model.layers[1]
    _, scores = sensitivity.sweep(model, tok, slices, {1: _rounded(first)}, tokens=32)
    assert list(scores) == [1]
    with pytest.raises(RuntimeError):
        with sensitivity.blocks_replaced(model, {1: torch.nn.Identity()}):
            assert model.model.layers[1] is not first
            raise RuntimeError("inside")
    assert model.model.layers[1] is first


def test_bad_arguments_are_named(lm):
    model, tok = lm
    slices = models.heldout_slices(tok, n_slices=2, tokens=32)
    n = len(model.model.layers)
    with pytest.raises(ValueError, match="quantized"):
        sensitivity.sweep(model, tok, slices, [torch.nn.Identity()], tokens=32)
    with pytest.raises(ValueError, match="replacements"):
        with sensitivity.blocks_replaced(model, {n: torch.nn.Identity()}):
            pass
    with pytest.raises(TypeError, match=r"replacements\[0\]"):
        with sensitivity.blocks_replaced(model, {0: "block"}):
            pass
