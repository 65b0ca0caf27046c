"""coursekit.ptq against the published reference algorithms, re-implemented here in plain torch.

* GPTQ: ``fasterquant`` of IST-DASLab's ``gptq.py`` (Frantar et al., 2022) with its ``Quantizer``
  (asymmetric, range widened to include 0): lazy blocks of 128 columns kept in a block copy W1,
  per-channel or per-group grids taken from W[:, i : i + groupsize] when the sweep reaches a group
  (the block-start state), ``--act-order`` and ``--static-groups``, float32 throughout, H = 2 X^T X / n.
* AWQ: ``_search_module_scale`` of mit-han-lab's llm-awq (``auto_scale.py``): 20 ratios, scales
  x_mean ** ratio clamped at 1e-4 and centred, the inspected module's output compared in mean
  squared error, weights through llm-awq's ``pseudo_quantize_tensor`` (min..max grid, zero point).

Written from the papers and the published algorithms, not copied. coursekit must give the same
codes (GPTQ: up to float noise between its float64 Cholesky factor and the reference's float32
one) and the same scales (AWQ).
"""
import copy

import pytest
import torch
from torch import nn

from coursekit import ptq
from coursekit.ptq import grid as G
from coursekit.ptq.awq import ALPHAS, search_scale
from coursekit.ptq.gptq import gptq_weight


# --------------------------------------------------------------------------- GPTQ, the reference
def _find_params(w, bits):
    """The reference Quantizer.find_params (per channel, asymmetric): unsigned grid of each row."""
    maxq = 2 ** bits - 1
    xmin = torch.clamp(w.min(dim=1).values, max=0)
    xmax = torch.clamp(w.max(dim=1).values, min=0)
    both = (xmin == 0) & (xmax == 0)
    xmin[both], xmax[both] = -1, 1
    scale = (xmax - xmin) / maxq
    return scale[:, None], torch.round(-xmin / scale)[:, None]


def _codes(w, scale, zero, bits):
    return torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)


def fasterquant(w, h, bits, blocksize=128, percdamp=0.01, groupsize=-1, actorder=False, static_groups=False,
                dtype=torch.float32):
    """GPTQ as published: returns the unsigned codes (out, in) in the original column order."""
    w, h = w.clone().to(dtype), h.clone().to(dtype)
    n = w.shape[1]
    scale, zero = _find_params(w, bits)               # before dead columns are zeroed, as published
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    groups = [_find_params(w[:, i:i + groupsize], bits) for i in range(0, n, groupsize)] if static_groups else []
    perm = torch.argsort(torch.diag(h), descending=True) if actorder else torch.arange(n)
    w, h = w[:, perm], h[perm][:, perm]
    h[range(n), range(n)] += percdamp * torch.mean(torch.diag(h))
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        w1, err1, hinv1 = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1, dtype=dtype), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col, d = w1[:, i], hinv1[i, i]
            if groupsize != -1:
                if static_groups:
                    scale, zero = groups[int(perm[i1 + i]) // groupsize]
                elif (i1 + i) % groupsize == 0:
                    scale, zero = _find_params(w[:, i1 + i:i1 + i + groupsize], bits)   # W, not W1
            codes = _codes(col[:, None], scale, zero, bits)[:, 0]
            q[:, i1 + i] = codes
            err = (col - scale[:, 0] * (codes - zero[:, 0])) / d
            w1[:, i:] -= err[:, None] @ hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q[:, torch.argsort(perm)]


def _layer(seed=0, n_out=32, n_in=384, n_tokens=768, dead=()):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n_in, n_in, generator=g) / n_in ** 0.5 + torch.eye(n_in)
    x = torch.randn(n_tokens, n_in, generator=g) @ mix
    x[:, 7] *= 20                                    # an outlier channel, so act-order has work to do
    x[:, list(dead)] = 0
    return torch.randn(n_out, n_in, generator=g), x


CASES = {                   # name: (group_size, act_order, group_grid) for coursekit; the reference's flags
    "per-channel": ((None, False, None), dict()),
    "g128": ((128, False, None), dict(groupsize=128)),
    "g64": ((64, False, None), dict(groupsize=64)),
    "g32": ((32, False, None), dict(groupsize=32)),
    "act-order": ((None, True, None), dict(actorder=True)),
    "static g32": ((32, False, "static"), dict(groupsize=32, static_groups=True)),
    "act-order + static g32": ((32, True, None), dict(groupsize=32, actorder=True, static_groups=True)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_equals_the_reference_fasterquant(name, bits):
    (group_size, act_order, group_grid), flags = CASES[name]
    w, x = _layer(seed=bits, dead=(3,))
    h = x.T @ x / x.shape[0]
    ref = fasterquant(w, 2 * h, bits, **flags)
    codes, scale, zero = gptq_weight(w, h, bits, group_size, act_order=act_order, group_grid=group_grid)
    differ = codes + 2 ** (bits - 1) != ref
    # Float noise: where a weight sits within ~1e-5 of a rounding midpoint (a near tie), the float32
    # sweep may round it the other way, and the rest of that row then follows its own path.
    assert int(differ.any(dim=1).sum()) <= 1, f"{int(differ.any(dim=1).sum())} rows differ"
    assert float(differ.float().mean()) < 0.01, f"{100 * float(differ.float().mean()):.2f} % of the codes differ"
    # the grid too: coursekit's signed zero point is the reference's unsigned one minus 2^(bits-1)
    ref_scale, ref_zero = _find_params(w, bits) if group_size is None else (None, None)
    if ref_scale is not None:
        torch.testing.assert_close(scale, ref_scale)
        assert torch.equal(zero + 2 ** (bits - 1), ref_zero)


def test_the_updated_group_grid_is_not_the_reference():
    """The variant kept as an option really differs where groups start inside a lazy block."""
    w, x = _layer(seed=5)
    h = x.T @ x / x.shape[0]
    ref = fasterquant(w, 2 * h, 4, groupsize=32)
    updated, _, _ = gptq_weight(w, h, 4, 32, group_grid="updated")
    assert float((updated + 8 != ref).float().mean()) > 0.05
    same, _, _ = gptq_weight(w, h, 4, 128, group_grid="updated")          # groups = blocks: no difference
    assert int((same + 8 != fasterquant(w, 2 * h, 4, groupsize=128)).any(dim=1).sum()) <= 1


def test_act_order_with_groups_needs_static_grids():
    w, x = _layer(seed=6, n_in=64)
    with pytest.raises(ValueError, match="^group_grid: .*static"):
        gptq_weight(w, x.T @ x, 4, 32, act_order=True, group_grid="block_start")
    with pytest.raises(ValueError, match="^group_grid: expected one of"):
        gptq_weight(w, x.T @ x, 4, 32, group_grid="dynamic")


# --------------------------------------------------------------------------- AWQ, the reference
def pseudo_quantize(w, n_bit, group_size):
    """llm-awq's pseudo_quantize_tensor with a zero point: round to a min..max grid and back."""
    shape = w.shape
    w = w.reshape(-1, group_size if group_size else shape[-1])
    max_int = 2 ** n_bit - 1
    scales = (w.amax(dim=1, keepdim=True) - w.amin(dim=1, keepdim=True)).clamp(min=1e-5) / max_int
    zeros = (-torch.round(w.amin(dim=1, keepdim=True) / scales)).clamp(0, max_int)
    return ((torch.clamp(torch.round(w / scales) + zeros, 0, max_int) - zeros) * scales).reshape(shape)


@torch.no_grad()
def search_module_scale(block, linears, x, n_bit, group_size, n_grid=20):
    """llm-awq's scale search: returns (best scales, best ratio, loss per ratio)."""
    org_out = block(x)
    x_mean = x.abs().view(-1, x.shape[-1]).mean(0)
    original = copy.deepcopy(block.state_dict())
    best, history = (float("inf"), None, -1), []
    for r in range(n_grid):
        ratio = r / n_grid
        scales = x_mean.pow(ratio).clamp(min=1e-4).view(-1)
        scales = scales / (scales.max() * scales.min()).sqrt()
        for fc in linears:
            fc.weight.mul_(scales.view(1, -1))
            fc.weight.data = pseudo_quantize(fc.weight.data, n_bit, group_size) / scales.view(1, -1)
        loss = (org_out - block(x)).float().pow(2).mean().item()
        history.append(loss)
        if loss < best[0]:
            best = (loss, scales, ratio)
        block.load_state_dict(original)
    return best[1], best[2], history


class SideBySide(nn.Module):
    """The outputs of several linears that read one input, side by side (what coursekit scores)."""

    def __init__(self, linears):
        super().__init__()
        self.linears = nn.ModuleList(linears)

    def forward(self, x):
        return torch.cat([lin(x) for lin in self.linears], dim=-1)


def _stats(x):
    """What coursekit's search reads instead of the tokens: mean |x_j| and H = X^T X / n."""
    return x.abs().mean(0), x.T @ x / x.shape[0]


def _awq_case(seed, widths, n_in=128, n_tokens=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tokens, n_in, generator=g) * torch.rand(n_in, generator=g).mul(3).exp()   # uneven channels
    x[:, [5, 100]] *= 25                             # two outlier channels
    torch.manual_seed(seed)
    return x, [nn.Linear(n_in, w) for w in widths]


@pytest.mark.parametrize("bits,group_size", [(4, 64), (4, None), (3, 32), (3, None)])
@pytest.mark.parametrize("widths", [(48,), (64, 32, 32)], ids=["one layer", "q/k/v-like group"])
def test_awq_search_equals_llm_awq(bits, group_size, widths):
    x, linears = _awq_case(bits * 10 + len(widths), widths)
    block = linears[0] if len(linears) == 1 else SideBySide(linears)
    ref_s, ref_ratio, ref_hist = search_module_scale(block, linears, x, bits, group_size)
    s, alpha, errors = search_scale(*_stats(x), [lin.weight.detach().float() for lin in linears], bits, group_size)
    assert ALPHAS == tuple(r / 20 for r in range(20))
    assert alpha == ref_ratio
    torch.testing.assert_close(s, ref_s)
    torch.testing.assert_close(torch.tensor(errors), torch.tensor(ref_hist), rtol=1e-3, atol=0)


def test_the_grids_agree_where_a_group_holds_both_signs():
    """coursekit's grid widens the range to include 0, llm-awq's does not: same values otherwise."""
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    for gs in (32, 128, None):
        torch.testing.assert_close(G.rtn_dequantized(w, 4, gs), pseudo_quantize(w, 4, gs))
    positive = w.abs() + 0.1
    assert not torch.allclose(G.rtn_dequantized(positive, 4, 32), pseudo_quantize(positive, 4, 32))


# --------------------------------------------------------------------------- AWQ on a Llama, as llm-awq runs it
def _tiny_llama(kv_heads):
    from transformers import LlamaConfig, LlamaForCausalLM
    from coursekit.models.lm import load_lm
    _, tok = load_lm()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    texts = ["In the beginning was the word.", "And the light shineth in darkness; and the darkness "
             "comprehended it not.", "There was a man sent from God, whose name was John."] * 4
    return model, tok, texts, ptq.calibrate(model, tok, texts)


def _layer_inputs(model, tok, texts, names):
    """Every named layer's input tokens, text by text (no padding): what llm-awq's search reads."""
    seen = {n: [] for n in names}
    hooks = [model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: seen[n].append(a[0][0]))
             for n in names]
    with torch.no_grad():
        for t in texts:
            model(**tok(t, return_tensors="pt"))
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


@pytest.mark.parametrize("kv_heads", [2, 4], ids=["grouped-query", "multi-head"])
def test_awq_on_llama_follows_llm_awq(kv_heads):
    from coursekit.ptq.act_layers import InputScaled
    model, tok, texts, cal = _tiny_llama(kv_heads)
    original = copy.deepcopy(model)
    inputs = _layer_inputs(original, tok, texts, [g[0] for g in cal.groups])
    q = ptq.awq(model, cal, 4, None)
    o_projs = [g[0] for g in cal.groups if g[0].endswith("o_proj")]
    # o_proj is skipped exactly where v_proj cannot absorb its division (llm-awq: shapes differ)
    assert q.awq_skipped == (o_projs if kv_heads == 2 else [])
    assert not any(isinstance(m, InputScaled) for m in q.modules())      # every division folded
    # every group searched on the original weights (llm-awq's order), the single layers exactly as llm-awq
    for group in cal.groups:
        if group[0] in q.awq_skipped:
            continue
        x = inputs[group[0]]
        linears = [copy.deepcopy(original.get_submodule(n)) for n in group]
        _, alpha, _ = search_scale(*_stats(x), [lin.weight.detach() for lin in linears], 4, None)
        assert q.awq_alphas[group[0]] == alpha, group
        if len(group) == 1:
            assert search_module_scale(linears[0], linears, x, 4, None)[1] == alpha, group
