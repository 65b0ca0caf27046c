"""coursekit.ptq: each method against a reference derivation on tiny cases, and on the course's models."""
import copy

import pytest
import torch
from torch import nn

from coursekit.models import agreement as agr
from coursekit import ptq
from coursekit.layers import PackedLinear
from coursekit.memory import model_nbytes
from coursekit.ptq import grid as G
from coursekit.ptq.act_layers import InputScaled, W8A8Linear
from coursekit.ptq.awq import search_scale
from coursekit.ptq.gptq import gptq_weight, prepare_hessian


def _rtn_codes(w, bits, group_size):
    return G.quantize_weight(w, bits, group_size).data


def _expand(p, n):
    """A per-group parameter (out, n_groups) repeated over each group's columns: (out, n)."""
    return p.repeat_interleave(-(-n // p.shape[1]), dim=1)[:, :n]


def _round(w, scale, zero, bits):
    return torch.clamp(torch.round(w / scale) + zero, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _correlated_inputs(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d ** 0.5 + torch.eye(d)
    return torch.randn(n, d, generator=g) @ mix


# --------------------------------------------------------------------------- GPTQ
@pytest.mark.parametrize("group_size", [None, 8])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gptq_with_identity_hessian_is_round_to_nearest(bits, group_size):
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    codes, scale, zero = gptq_weight(w, torch.eye(32), bits, group_size, block=8)
    assert torch.equal(codes, _rtn_codes(w, bits, group_size))
    ref_scale, ref_zero = G.grid(w, bits, group_size)
    assert torch.allclose(scale, ref_scale) and torch.equal(zero, ref_zero)


def _textbook_gptq(w, h, bits, damp):
    """The algorithm as written in the paper: one column at a time, no lazy blocks, in float64.

    After fixing column i, the inverse Hessian of the remaining columns is updated by Gaussian
    elimination (OBS), instead of reading a row of the Cholesky factor.
    """
    w = w.double().clone()
    h = h.double().clone()
    h.diagonal().add_(damp * torch.diagonal(h).mean())
    hinv = torch.linalg.inv(h)
    scale, zero = (t.double() for t in G.grid(w.float(), bits, None))
    codes = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q = _round(w[:, i:i + 1], scale, zero, bits)
        codes[:, i] = q[:, 0]
        err = (w[:, i] - ((q - zero) * scale)[:, 0]) / hinv[i, i]
        w[:, i:] -= err[:, None] * hinv[i, i:][None, :]
        hinv = hinv - hinv[:, i:i + 1] @ hinv[i:i + 1, :] / hinv[i, i]     # remove column i
    return codes


@pytest.mark.parametrize("block", [1, 3, 128])
def test_vectorized_gptq_equals_textbook_loop(block):
    torch.manual_seed(0)
    x = _correlated_inputs(256, 12)
    w = torch.randn(6, 12)
    h = x.T @ x / x.shape[0]
    codes, _, _ = gptq_weight(w, h, bits=3, damp=0.01, block=block)
    ref = _textbook_gptq(w, h, 3, 0.01)
    assert (codes != ref).float().mean() < 0.02    # float32 sweep vs float64: at most a rare tie flips


def test_gptq_lowers_output_error_against_rtn():
    x = _correlated_inputs(512, 64, seed=3)
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    h = x.T @ x / x.shape[0]

    def out_err(codes, scale, zero, gs):
        deq = (codes - _expand(zero, 64)) * _expand(scale, 64)
        return float((x @ (deq - w).T).pow(2).mean())

    for gs, act_order in ((None, False), (16, False), (None, True), (16, True)):
        rtn_scale, rtn_zero = G.grid(w, 3, gs)
        rtn = out_err(_rtn_codes(w, 3, gs), rtn_scale, rtn_zero, gs)
        got = out_err(*gptq_weight(w, h, 3, gs, act_order=act_order), gs)
        assert got < 0.8 * rtn, (gs, act_order, got, rtn)


def test_gptq_dead_input_channel_gets_zero_weight():
    h = torch.eye(4)
    h[2, 2] = 0.0
    _, w, _ = prepare_hessian(h, torch.ones(3, 4), 0.01)
    assert torch.equal(w[:, 2], torch.zeros(3))


def test_gptq_bad_arguments_name_the_argument():
    w = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bits"):
        gptq_weight(w, torch.eye(8), bits=5)
    with pytest.raises(ValueError, match="group_size"):
        gptq_weight(w, torch.eye(8), group_size=0)
    with pytest.raises(ValueError, match="^h:"):
        gptq_weight(w, torch.eye(4))
    with pytest.raises(TypeError, match="calibration"):
        ptq.gptq(nn.Linear(8, 4), "texts")


# --------------------------------------------------------------------------- LLM.int8()
def test_outlier_split_is_exact_without_quantization():
    torch.manual_seed(0)
    x = torch.randn(5, 7, 32)
    x[..., [3, 17]] *= 40
    w = torch.randn(16, 32)
    torch.testing.assert_close(ptq.outlier_split_matmul(x, w, 6.0, quantize=False), x @ w.T, rtol=1e-5, atol=1e-4)


def test_outlier_split_beats_plain_int8_on_outliers():
    torch.manual_seed(0)
    x = torch.randn(64, 128)
    x[:, [5, 77]] *= 60
    w = torch.randn(32, 128) * 0.05
    exact = x @ w.T
    split = ptq.outlier_split_matmul(x, w, 6.0)
    plain = ptq.outlier_split_matmul(x, w, 1e9)           # threshold never reached: all int8
    assert (split - exact).pow(2).mean() < 0.1 * (plain - exact).pow(2).mean()


def test_llm_int8_layer_matches_the_function():
    torch.manual_seed(0)
    lin = nn.Linear(32, 8)
    layer = ptq.Int8OutlierLinear(lin)
    x = torch.randn(3, 32)
    x[:, 4] = 20.0
    w_deq = layer.int8_weight.float() * layer.weight_scale[:, None]
    torch.testing.assert_close(layer(x), ptq.outlier_split_matmul(x, w_deq, 6.0) + lin.bias, rtol=1e-4, atol=1e-4)
    assert layer.last_outliers == 1


def test_llm_int8_keeps_a_bf16_model_in_bf16():
    """A bf16 Linear followed by a LayerNorm: the quantized layer must hand back bf16."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.LayerNorm(16), nn.Linear(16, 8)).to(torch.bfloat16)
    x = torch.randn(4, 5, 32)
    x[..., 3] = 12.0                                              # one outlier channel
    x = x.to(torch.bfloat16)
    with torch.no_grad():
        ref = model(x)
        q = ptq.llm_int8(copy.deepcopy(model))
        y = q(x)
    assert isinstance(q[0], ptq.Int8OutlierLinear) and q[0].last_outliers == 1
    assert y.dtype == torch.bfloat16 and y.shape == ref.shape
    assert float((y.float() - ref.float()).norm() / ref.float().norm()) < 0.05


def test_llm_int8_layer_is_the_function_on_its_own_weights():
    """One decomposition serves both: the layer equals outlier_split_matmul on its dequantized
    weight, whose int8 rows (max over the non-outlier columns) are then the layer's codes."""
    torch.manual_seed(1)
    lin = nn.Linear(24, 6, bias=False)
    with torch.no_grad():
        lin.weight[:, 0] = 0.0                    # the outlier column holds no row's largest |w|
        lin.weight[:, 1:] += torch.sign(lin.weight[:, 1:]) * 0.01
    layer = ptq.Int8OutlierLinear(lin)
    x = torch.randn(3, 24)
    x[:, 0] = 30.0
    w_deq = layer.int8_weight.float() * layer.weight_scale[:, None]
    torch.testing.assert_close(layer(x), ptq.outlier_split_matmul(x, w_deq, 6.0), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- every layer checked first
def _model_with_a_layer_that_is_not_linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Conv1d(48, 8, 1))


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_methods_check_every_layer_before_changing_any(method):
    """The last named layer is a Conv1d: it refuses, and the model stays as it was."""
    model = _model_with_a_layer_that_is_not_linear()
    before = copy.deepcopy(model.state_dict())
    names = ["0", "2", "4"]
    x = torch.randn(64, 64)
    cal = ptq.Calibration.from_inputs({"0": x, "2": torch.relu(model[0](x)).detach(), "4": torch.randn(64, 48)})
    run = {"rtn": lambda: ptq.rtn(model, 4, 32, exclude=()), "gptq": lambda: ptq.gptq(model, cal, 4, 32),
           "awq": lambda: ptq.awq(model, cal, 4, 32)}[method]
    if method == "rtn":     # rtn finds its layers itself: name the conv by hand
        from coursekit.ptq.scaling import check_layers
        run = lambda: check_layers(model, names, 4, 32)   # noqa: E731
    with pytest.raises(TypeError, match=r"^model\.4: expected an nn\.Linear to quantize"):
        run()
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_a_group_size_that_does_not_divide_leaves_a_shorter_last_group(method):
    """48 inputs in groups of 32: a group of 32 and one of 16, bytes exact, output close to float."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 24))
    x = _correlated_inputs(256, 48, seed=7)
    cal = ptq.Calibration.from_inputs({"0": x})
    run = {"rtn": lambda m: ptq.rtn(m, 4, 32, exclude=()), "gptq": lambda m: ptq.gptq(m, cal, 4, 32),
           "awq": lambda m: ptq.awq(m, cal, 4, 32)}[method]
    q = run(copy.deepcopy(model))
    layer = q[0].inner if isinstance(q[0], InputScaled) else q[0]   # AWQ: no producer takes the divisor
    assert isinstance(layer, PackedLinear) and layer.scales.shape == (24, 2)
    assert model_nbytes(layer) == 24 * 48 // 2 + 24 * 2 * 4 + 24 * 2 + 24 * 4   # codes, scales, zeros, bias
    with torch.no_grad():
        err = (q(x) - model(x)).pow(2).mean() / model(x).pow(2).mean()
    assert err < 0.02, err


# --------------------------------------------------------------------------- SmoothQuant
def test_smoothing_moves_the_ranges_as_the_docstring_says():
    """After smoothing, activation range (a*w)^(1-alpha), weight range (a*w)^alpha, per channel."""
    a = torch.tensor([40.0, 2.0, 0.5, 9.0])
    w = torch.tensor([0.1, 0.8, 2.0, 0.3])
    for alpha in (0.2, 0.5, 0.8):
        s = ptq.smoothing_scales(a, w, alpha)
        torch.testing.assert_close(a / s, (a * w) ** (1 - alpha))
        torch.testing.assert_close(w * s, (a * w) ** alpha)



def test_smoothing_scales_formula_and_dead_channels():
    act = torch.tensor([4.0, 1.0, 0.0, 9.0])
    wmax = torch.tensor([1.0, 4.0, 2.0, 0.0])
    s = ptq.smoothing_scales(act, wmax, 0.5)
    torch.testing.assert_close(s, torch.tensor([2.0, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(ptq.smoothing_scales(act[:2], wmax[:2], 1.0), act[:2])


@pytest.fixture(scope="module")
def lm():
    from coursekit.models.lm import load_lm
    return load_lm()


@pytest.fixture(scope="module")
def encoder():
    from coursekit.models.encoder import load_encoder
    return load_encoder()


def _lm_texts(n=8):
    from coursekit.models.corpus import heldout_text
    return heldout_text().splitlines()[:n]


def test_calibration_groups_and_tokens(lm):
    model, tok = lm
    texts = _lm_texts(6)
    cal = ptq.calibrate(model, tok, texts, batch_size=4)
    n_tokens = sum(len(tok(t)["input_ids"]) for t in texts)
    q = "model.layers.0.self_attn.q_proj"
    seen = []                     # q_proj's inputs, recorded here by a hook of our own
    hook = model.get_submodule(q).register_forward_pre_hook(lambda m, a: seen.append(a[0][0]))
    with torch.no_grad():
        for t in texts:
            model(**tok(t, return_tensors="pt"))
    hook.remove()
    x = torch.cat(seen)
    assert cal.n_tokens == x.shape[0] == n_tokens
    assert ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj"] in cal.groups
    assert ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"] in cal.groups
    assert "lm_head" not in cal.names
    torch.testing.assert_close(cal.hessian(q), x.T @ x / n_tokens, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cal.absmax(q), x.abs().amax(0))
    torch.testing.assert_close(cal.mean_abs(q), x.abs().mean(0), rtol=1e-5, atol=1e-6)
    assert cal.stats[q] is cal.stats["model.layers.0.self_attn.v_proj"]      # one input, summed once
    with pytest.raises(TypeError, match="texts"):
        ptq.calibrate(model, tok, "one string")


def test_smoothing_leaves_the_fp32_lm_unchanged_and_folds_into_norms(lm):
    model, tok = lm
    cal = ptq.calibrate(model, tok, _lm_texts())
    smoothed = copy.deepcopy(model)
    ptq.smooth(smoothed, cal, alpha=0.5)
    assert not any(isinstance(m, InputScaled) for m in smoothed.modules())   # all folded
    norm0 = smoothed.model.layers[0].input_layernorm.weight
    assert not torch.allclose(norm0, model.model.layers[0].input_layernorm.weight)
    ids = tok(_lm_texts(3)[2], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(smoothed(**ids).logits, model(**ids).logits, rtol=1e-4, atol=2e-4)


def test_smoothing_leaves_the_fp32_encoder_unchanged(encoder):
    from coursekit.models.encoder import embed
    model, tok = encoder
    sentences = agr.calibration_sentences(16)
    cal = ptq.calibrate(model, tok, sentences)
    smoothed = copy.deepcopy(model)
    ptq.smooth(smoothed, cal, alpha=0.5)
    assert any(isinstance(m, InputScaled) for m in smoothed.modules())   # post-LN: no fold there
    torch.testing.assert_close(embed(smoothed, tok, sentences), embed(model, tok, sentences), rtol=1e-4, atol=1e-5)


def test_w8a8_layers_and_smoothquant_run(encoder):
    model, tok = encoder
    cal = ptq.calibrate(model, tok, agr.calibration_sentences(8))
    m = ptq.smoothquant(copy.deepcopy(model), cal, 0.5)
    assert sum(isinstance(x, W8A8Linear) for x in m.modules()) == 36
    with pytest.raises(ValueError, match="alpha"):
        ptq.smoothquant(copy.deepcopy(model), cal, 1.5)
    with pytest.raises(ValueError, match="scheme"):
        ptq.w8a8(copy.deepcopy(model), cal, "per_row")


# --------------------------------------------------------------------------- AWQ, RTN, storage
def test_awq_search_never_worse_than_rtn_on_its_data():
    x = _correlated_inputs(256, 32, seed=5)
    x[:, 3] *= 30
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(6))
    s, alpha, errors = search_scale(x.abs().mean(0), x.T @ x / x.shape[0], [w], bits=3, group_size=None)
    assert errors[0] >= min(errors) and alpha > 0     # alpha 0 is RTN; the outlier channel is worth scaling
    assert s[3] == s.max()


def test_methods_store_packed_layers_and_sizes_are_exact(lm):
    model, tok = lm
    cal = ptq.calibrate(model, tok, _lm_texts())
    sizes = {}
    for name, build in (("rtn", lambda m: ptq.rtn(m, 4, 64)), ("gptq", lambda m: ptq.gptq(m, cal, 4, 64)),
                        ("awq", lambda m: ptq.awq(m, cal, 4, 64))):
        m = build(copy.deepcopy(model))
        packed = [x for x in m.modules() if isinstance(x, PackedLinear)]
        assert len(packed) == len(cal.names)
        sizes[name] = model_nbytes(m)
    assert sizes["gptq"] == sizes["rtn"] < model_nbytes(model)
    assert sizes["awq"] >= sizes["rtn"]        # plus the input divisors AWQ could not fold (none here)


def test_gptq_and_awq_beat_rtn_on_the_encoder_at_3_bits(encoder):
    from coursekit.models.encoder import embed
    model, tok = encoder
    cal = ptq.calibrate(model, tok, agr.calibration_sentences(64))
    held = agr.evaluation_sentences()[:64]
    ref = embed(model, tok, held)
    cos = {}
    for name, build in (("rtn", lambda m: ptq.rtn(m, 3)), ("gptq", lambda m: ptq.gptq(m, cal, 3)),
                        ("awq", lambda m: ptq.awq(m, cal, 3, None))):
        cos[name] = float((embed(build(copy.deepcopy(model)), tok, held) * ref).sum(-1).mean())
    assert cos["gptq"] > cos["rtn"] and cos["awq"] > cos["rtn"], cos


# --------------------------------------------------------------------------- the evaluation set
def test_evaluation_and_calibration_sets_are_disjoint():
    ev, cal = agr.evaluation_sentences(), agr.calibration_sentences(None)
    assert len(ev) == 1024 and len(set(ev)) == 1024
    assert not set(ev) & set(cal)
    assert not set(ev) & set(agr.kjv_sentences(128))
    e = torch.nn.functional.normalize(torch.randn(64, 8), dim=-1)
    a = agr.agreement_of(e, e)
    assert a.mean_cosine == pytest.approx(1.0) and a.retrieval == 1.0 and len(a.slices) == 8
    with pytest.raises(ValueError, match="n"):
        agr.calibration_sentences(5000)


# --------------------------------------------------------------------------- sequential (block by block)
def test_blockwise_sees_the_float_inputs_in_block_0_and_quantized_ones_after(lm):
    from coursekit.ptq.sequential import blockwise, transformer_blocks
    model, tok = lm
    model = copy.deepcopy(model)
    cal = ptq.calibrate(model, tok, _lm_texts(8), batch_size=3)
    prefix, blocks = transformer_blocks(model)
    assert prefix == "model.layers" and len(blocks) == len(model.model.layers)
    seen = []
    for names, stats in blockwise(model, cal):
        q = names[0]
        seen.append((q, stats[q].n_tokens, stats[q].hessian()))
        ptq.rtn(model.get_submodule(q.rsplit(".", 2)[0]), 2, None, exclude=())   # wreck this block
    assert all(n == cal.n_tokens for _, n, _ in seen)
    q0, _, h0 = seen[0]
    torch.testing.assert_close(h0, cal.hessian(q0), rtol=1e-4, atol=1e-5)      # block 0: float inputs
    q1, _, h1 = seen[1]
    assert (h1 - cal.hessian(q1)).abs().max() > 1e-2 * cal.hessian(q1).abs().max()   # block 1: quantized


def test_sequential_gptq_quantizes_every_layer_and_needs_texts(lm):
    model, tok = lm
    cal = ptq.calibrate(model, tok, _lm_texts(8))
    seq = ptq.gptq(copy.deepcopy(model), cal, 4, 64, sequential=True)
    plain = ptq.gptq(copy.deepcopy(model), cal, 4, 64)
    assert sum(isinstance(m, PackedLinear) for m in seq.modules()) == len(cal.names)
    first = "model.layers.0.self_attn.q_proj"          # block 0 sees the same inputs either way
    assert torch.equal(seq.get_submodule(first).packed_weight, plain.get_submodule(first).packed_weight)
    last = f"model.layers.{len(model.model.layers) - 1}.mlp.down_proj"
    assert not torch.equal(seq.get_submodule(last).packed_weight, plain.get_submodule(last).packed_weight)
    by_hand = ptq.Calibration.from_inputs({"model.layers.0.self_attn.q_proj": torch.randn(8, 256)})
    with pytest.raises(ValueError, match="^calibration: expected a Calibration from ptq.calibrate"):
        ptq.gptq(copy.deepcopy(model), by_hand, 4, 64, sequential=True)


# --------------------------------------------------------------------------- W8A8 controls
def _w8a8_layer(**kw):
    torch.manual_seed(2)
    lin = nn.Linear(16, 6)
    x = torch.randn(2, 5, 16)
    x[1, :, 3] = 40.0                                   # sequence 1 has an outlier channel
    return lin, x, W8A8Linear.from_linear(lin, x.abs().amax(dim=(0, 1)), **kw)


def test_w8a8_schemes_are_presets_of_the_two_choices():
    for scheme, acts, weights in (("per_tensor", "static", "per_tensor"), ("per_token", "per_token", "per_channel")):
        _, _, layer = _w8a8_layer(scheme=scheme)
        assert (layer.activations, layer.weights, layer.scheme) == (acts, weights, scheme)
    _, _, layer = _w8a8_layer(scheme="per_token", weights="per_tensor")   # one thing changed
    assert (layer.activations, layer.weights, layer.scheme) == ("per_token", "per_tensor", "per_token/per_tensor")
    assert layer.weight_scale.numel() == 1


def test_w8a8_per_token_activations_with_per_tensor_weights():
    lin, x, layer = _w8a8_layer(activations="per_token")
    w_scale = lin.weight.abs().max() / 127
    wq = torch.round(lin.weight / w_scale)
    x_scale = x.abs().amax(dim=-1, keepdim=True) / 127
    expected = (torch.round(x / x_scale) @ wq.T) * x_scale * w_scale + lin.bias
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_w8a8_dynamic_scale_is_one_per_sequence_and_equals_static_on_its_own_input():
    lin, x, layer = _w8a8_layer(activations="dynamic")
    with torch.no_grad():
        both = layer(x)
        for i in range(2):                                       # batching changes nothing
            torch.testing.assert_close(both[i], layer(x[i:i + 1])[0], rtol=0, atol=0)
            static = W8A8Linear.from_linear(lin, x[i].abs().amax(dim=0))
            torch.testing.assert_close(both[i], static(x[i]), rtol=1e-6, atol=1e-6)
        assert not torch.equal(layer(x[0]), W8A8Linear.from_linear(lin, x.abs().amax(dim=(0, 1)))(x[0]))


def test_w8a8_controls_through_the_model_function_and_bad_names():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 4))
    cal = ptq.Calibration.from_inputs({"0": torch.randn(32, 8)})
    q = ptq.w8a8(copy.deepcopy(model), cal, activations="dynamic")
    assert (q[0].activations, q[0].weights) == ("dynamic", "per_tensor")
    q = ptq.smoothquant(copy.deepcopy(model), cal, 0.5, "per_token", weights="per_tensor")
    assert (q[0].activations, q[0].weights) == ("per_token", "per_tensor")
    with pytest.raises(ValueError, match="activations"):
        ptq.w8a8(copy.deepcopy(model), cal, activations="per_row")
    with pytest.raises(ValueError, match="weights"):
        ptq.smoothquant(model, cal, 0.5, weights="per_group")
    assert isinstance(model[0], nn.Linear)                       # the failed call changed nothing
    with pytest.raises(ValueError, match="act_absmax"):
        W8A8Linear.from_linear(nn.Linear(8, 4), activations="static")
    W8A8Linear.from_linear(nn.Linear(8, 4), activations="dynamic")   # run-time scales need no calibration


def test_llm_int8_counts_the_channels_it_kept_in_float_over_calls():
    torch.manual_seed(4)
    layer = ptq.Int8OutlierLinear(nn.Linear(16, 4))
    x = torch.randn(3, 16).clamp(-2, 2)
    x[0, 5] = 9.0
    layer(x)
    x2 = torch.randn(3, 16).clamp(-2, 2)
    x2[1, 7] = -8.0
    layer(x2)
    assert layer.last_outliers == 1 and layer.channels_kept == 2
    assert layer.kept.nonzero().flatten().tolist() == [5, 7]
    layer.reset_kept()
    assert layer.channels_kept == 0


def test_gptq_of_layers_sharing_an_input_equals_gptq_of_each_alone():
    """ptq.gptq sweeps a group's stacked rows at once (they share H): the codes are those of each layer alone."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(12, 6), nn.Linear(12, 5))
    x = _correlated_inputs(64, 12, seed=6)
    cal = ptq.Calibration.from_inputs({"0": x, "1": x}, groups=[["0", "1"]])
    cal.stats["1"] = cal.stats["0"]
    for group_size in (None, 4):
        q = ptq.gptq(copy.deepcopy(model), cal, 3, group_size)
        for i in range(2):
            codes, scale, zero = gptq_weight(model[i].weight.detach(), x.T @ x / 64, 3, group_size)
            torch.testing.assert_close(q[i].dequantized_weight(), (codes.float() - _expand(zero, 12)) * _expand(scale, 12),
                                       rtol=1e-6, atol=1e-6)


def test_awq_alphas_sets_the_search_grid():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(16, 8))
    x = _correlated_inputs(128, 16, seed=8)
    x[:, 2] *= 20
    cal = ptq.Calibration.from_inputs({"0": x})
    only_zero = ptq.awq(copy.deepcopy(model), cal, 3, None, alphas=(0.0,))     # alpha 0 is RTN
    rtn = ptq.rtn(copy.deepcopy(model), 3, None)
    torch.testing.assert_close(only_zero[0].dequantized_weight(), rtn[0].dequantized_weight())
    assert only_zero.awq_alphas == {"0": 0.0}
    assert ptq.awq(copy.deepcopy(model), cal, 3, None, alphas=(0.0, 0.5)).awq_alphas["0"] in (0.0, 0.5)
    with pytest.raises(TypeError, match="alphas"):
        ptq.awq(copy.deepcopy(model), cal, 3, None, alphas=())
    with pytest.raises(ValueError, match="alphas"):
        ptq.awq(model, cal, 3, None, alphas=(0.5, 1.5))
    assert isinstance(model[0], nn.Linear)
