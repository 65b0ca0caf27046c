"""Quantized linear layers: accuracy, storage, state dicts on the meta device, bad input."""
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from coursekit import layers, quant
from coursekit.layers import (FakeQuantLinear, PackedLinear, W2A16Linear, W4A16Linear, W8A16Linear,
                              linear_names, meta_tensors, replace_linear)
from coursekit.memory import model_nbytes


def _linear(in_f=128, out_f=48, bias=True, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=bias)
    with torch.no_grad():
        if bias:
            lin.bias.normal_(0, 0.1)
    return lin.to(dtype)


def _rel_err(y, ref):
    y, ref = y.detach().float(), ref.detach().float()
    return float((y - ref).norm() / ref.norm())


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval(), cfg


def _linear_weight_numel(model):
    return sum(m.weight.numel() for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and not n.endswith("lm_head"))


# --------------------------------------------------------------------------- W8A16Linear
@pytest.mark.parametrize("bias", [True, False])
def test_w8a16_matches_fp32_linear(bias):
    lin = _linear(bias=bias)
    layer = W8A16Linear.from_linear(lin)
    x = torch.randn(3, 5, 128)
    y, ref = layer(x), lin(x)
    assert y.shape == ref.shape == (3, 5, 48) and y.dtype == torch.float32
    assert _rel_err(y, ref) < 0.01
    assert (layer.bias is None) == (not bias)


def test_w8a16_buffers_and_reference_quantizer():
    lin = _linear()
    layer = W8A16Linear.from_linear(lin)
    assert dict(layer.named_parameters()) == {}
    assert layer.int8_weight.dtype == torch.int8 and layer.int8_weight.shape == (48, 128)
    assert layer.scales.shape == (48,) and layer.scales.dtype == torch.float32
    q = quant.quantize(lin.weight.detach(), bits=8, symmetric=True, granularity="per_channel", axis=0)
    assert torch.equal(layer.int8_weight, q.data)
    torch.testing.assert_close(layer.dequantized_weight(), q.dequantize())
    # forward is F.linear with the dequantized weight, without building it
    x = torch.randn(4, 128)
    torch.testing.assert_close(layer(x), x @ q.dequantize().T + lin.bias, rtol=1e-5, atol=1e-5)
    assert set(layer.state_dict()) == {"int8_weight", "scales", "bias"}


def test_int8_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(torch.zeros(2, 2, dtype=torch.int8))


def test_w8a16_bf16_activations_stay_bf16():
    lin = _linear(dtype=torch.bfloat16)
    layer = W8A16Linear.from_linear(lin)
    assert layer.scales.dtype == torch.bfloat16
    x = torch.randn(2, 128, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    assert _rel_err(y, lin(x)) < 0.03


def test_w8a16_fp32_layer_accepts_bf16_input():
    layer = W8A16Linear.from_linear(_linear())
    y = layer(torch.randn(2, 128, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


# --------------------------------------------------------------------------- packed layers
@pytest.mark.parametrize("bits,cls,bound", [(4, W4A16Linear, 0.15), (2, W2A16Linear, 0.8)])
def test_packed_round_trip(bits, cls, bound):
    lin = _linear(in_f=256)
    layer = cls.from_linear(lin, group_size=64)
    assert isinstance(layer, cls) and layer.bits == bits
    assert layer.packed_weight.dtype == torch.uint8
    assert layer.packed_weight.numel() == 48 * 256 * bits // 8
    assert layer.scales.shape == layer.zero_points.shape == (48, 4)
    q = quant.quantize(lin.weight.detach(), bits=bits, granularity="per_group", group_size=64)
    torch.testing.assert_close(layer.dequantized_weight(), q.dequantize())
    x = torch.randn(8, 256)
    err = _rel_err(layer(x), lin(x))
    assert 0 < err < bound
    if bits == 4:
        assert err > _rel_err(W8A16Linear.from_linear(lin)(x), lin(x))


def test_packed_linear_generic_bits_and_no_bias():
    lin = _linear(in_f=64, bias=False)
    layer = PackedLinear.from_linear(lin, bits=2, group_size=32)
    assert layer.bits == 2 and layer.bias is None and layer.packed_weight.numel() == 48 * 64 // 4
    assert layer(torch.randn(1, 64)).shape == (1, 48)
    assert W4A16Linear.from_linear(lin, group_size=64).bits == 4


def test_packed_bf16_activations():
    lin = _linear(in_f=128, dtype=torch.bfloat16)
    y = W4A16Linear.from_linear(lin)(torch.randn(2, 128, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_from_codes_is_what_from_linear_builds():
    lin = _linear(in_f=128)
    q = quant.quantize(lin.weight.detach(), bits=4, granularity="per_group", group_size=32)
    layer = PackedLinear.from_codes(q.data, q.scale, q.zero_point, bits=4, group_size=32, bias=lin.bias)
    reference = W4A16Linear.from_linear(lin, group_size=32)
    assert type(layer) is PackedLinear and repr(layer).endswith("bits=4, group_size=32)")
    for name, buf in reference.named_buffers():
        assert torch.equal(getattr(layer, name), buf), name
    two_bit = W2A16Linear.from_codes(q.data.clamp(-2, 1), q.scale, q.zero_point, group_size=32)
    assert type(two_bit) is W2A16Linear and two_bit.bits == 2


def test_from_codes_one_group_per_row_and_a_shared_scale():
    codes = torch.tensor([[-2, -1, 0, 1], [1, 1, -2, 0]], dtype=torch.int8)
    layer = PackedLinear.from_codes(codes, torch.tensor(0.5), torch.tensor(-1), bits=2)   # per-tensor grid
    assert layer.group_size == 4 and layer.scales.shape == (2, 1) and layer.bias is None
    assert torch.equal(layer.dequantized_weight(), 0.5 * (codes.float() + 1))
    with pytest.raises(ValueError, match="scale: expected 2 x 1 entries"):
        PackedLinear.from_codes(codes, torch.ones(3), torch.zeros(3), bits=2)
    with pytest.raises(ValueError, match="codes: expected an integer tensor"):
        PackedLinear.from_codes(codes.float(), torch.tensor(0.5), torch.tensor(0), bits=2)


def test_one_line_subclasses_fix_their_width():
    assert W4A16Linear(64, 8).bits == 4 and W2A16Linear(64, 8).bits == 2 and PackedLinear(64, 8).bits == 4
    assert repr(W2A16Linear(64, 8, bias=False, group_size=32)) == (
        "W2A16Linear(in_features=64, out_features=8, bias=False, bits=2, group_size=32)")
    with pytest.raises(ValueError, match="bits: expected one of 2, got 4"):
        W2A16Linear.from_linear(nn.Linear(64, 8), bits=4)


def test_fake_quant_to_packed_keeps_its_grid():
    lin = _linear(in_f=64)
    x = torch.randn(3, 64)
    for kwargs in (dict(granularity="per_tensor"), dict(granularity="per_channel"), dict(group_size=16),
                   dict(granularity="per_channel", symmetric=True)):
        fq = FakeQuantLinear.from_linear(lin, bits=4, **kwargs)
        packed = fq.to_packed()
        torch.testing.assert_close(packed.dequantized_weight(), fq.quantized_weight().detach())
        torch.testing.assert_close(packed(x), fq(x).detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="axis: expected 0"):
        FakeQuantLinear.from_linear(lin, bits=4, granularity="per_channel", axis=1).to_packed()


def test_replace_modules_is_the_walk():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    out = layers.replace_modules(model, ["0", "2.0"], lambda m: nn.Identity())
    assert out is model and isinstance(model[0], nn.Identity) and isinstance(model[2][0], nn.Identity)
    assert isinstance(model[1], nn.ReLU)
    assert isinstance(layers.replace_modules(nn.Linear(2, 2), [""], lambda m: nn.Identity()), nn.Identity)


# --------------------------------------------------------------------------- FakeQuantLinear
def test_fake_quant_forward_equals_packed_layer_and_gradient_flows():
    lin = _linear(in_f=128)
    fq = FakeQuantLinear.from_linear(lin, bits=4, group_size=64)
    assert isinstance(fq, nn.Linear) and fq.weight is lin.weight
    x = torch.randn(4, 128)
    packed = W4A16Linear.from_linear(fq, group_size=64)
    torch.testing.assert_close(fq(x), packed(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fq.quantized_weight().detach(), packed.dequantized_weight())
    fq(x).sum().backward()
    # straight-through: the gradient is the one of a plain linear layer with that weight
    assert fq.weight.grad is not None and torch.allclose(fq.weight.grad, torch.ones(48, 4) @ x)


def test_fake_quant_int8_per_channel_matches_w8a16():
    lin = _linear()
    fq = FakeQuantLinear.from_linear(lin, bits=8, symmetric=True, granularity="per_channel")
    x = torch.randn(3, 128)
    torch.testing.assert_close(fq(x), W8A16Linear.from_linear(lin)(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- models
def test_replace_linear_on_llama_excludes_lm_head_and_keeps_outputs_close():
    model, _ = _tiny_llama()
    ids = torch.randint(0, 96, (2, 16))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    names = linear_names(model)
    assert len(names) == 2 * 7 and "lm_head" not in names
    out = replace_linear(model)
    assert out is model
    assert type(model.lm_head) is nn.Linear
    assert isinstance(model.model.layers[1].mlp.down_proj, W8A16Linear)
    assert not any(type(m) is nn.Linear for n, m in model.named_modules() if n != "lm_head")
    with torch.no_grad():
        assert _rel_err(model(input_ids=ids).logits, ref) < 0.02


def test_exclude_patterns():
    model, _ = _tiny_llama()
    assert linear_names(model, exclude=None)[-1] == "lm_head"
    assert not any("down_proj" in n for n in linear_names(model, exclude=("lm_head", "down_proj")))
    assert not any(n.startswith("model.layers.0.") for n in linear_names(model, exclude=["layers.0"]))
    assert "lm_head" in linear_names(model, exclude="head")      # components, not substrings
    replace_linear(model, exclude=("lm_head", "mlp"))
    assert type(model.model.layers[0].mlp.gate_proj) is nn.Linear
    assert isinstance(model.model.layers[0].self_attn.q_proj, W8A16Linear)


def test_replace_linear_of_a_bare_linear_returns_the_new_layer():
    assert isinstance(replace_linear(_linear(), exclude=()), W8A16Linear)


def test_single_layer_storage():
    lin = nn.Linear(1024, 256, bias=False)
    fp32 = model_nbytes(lin)
    assert model_nbytes(W8A16Linear.from_linear(lin)) == 256 * 1024 + 256 * 4          # ~0.25x
    assert model_nbytes(W4A16Linear.from_linear(lin, group_size=128)) == 256 * 512 + 256 * 8 * 5
    assert model_nbytes(W4A16Linear.from_linear(lin, group_size=128)) / fp32 < 0.14   # ~0.125x
    assert model_nbytes(W2A16Linear.from_linear(lin, group_size=128)) / fp32 < 0.075


def test_memory_ratios():
    model, _ = _tiny_llama()
    n = _linear_weight_numel(model)
    fp32 = model_nbytes(model)
    w8 = model_nbytes(replace_linear(_tiny_llama()[0]))
    w4 = model_nbytes(replace_linear(_tiny_llama()[0], W4A16Linear, group_size=64))
    saved8, saved4 = fp32 - w8, fp32 - w4
    # int8: 1 byte instead of 4 per weight, minus one fp32 scale per output row
    assert 0.70 * 4 * n < saved8 <= 3 * n
    # int4: half a byte per weight, plus a 4-byte scale and a 1-byte zero point per 64 weights
    expected4 = n * (4 - 0.5 - 5 / 64)
    assert abs(saved4 - expected4) / expected4 < 0.01


def test_meta_device_load_assign_never_materializes_fp32():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    for layer_cls, kwargs in ((W8A16Linear, {}), (W4A16Linear, {"group_size": 32})):
        model, cfg = _tiny_llama()
        replace_linear(model, layer_cls, **kwargs)
        sd = model.state_dict()
        with torch.device("meta"):
            empty = replace_linear(type(model)(cfg), layer_cls, **kwargs)
        assert all(t.is_meta for t in empty.state_dict().values())
        empty.load_state_dict(sd, assign=True)
        # non-persistent buffers (rotary frequencies) are not in a state dict: recompute them
        assert meta_tensors(empty) == ["model.rotary_emb.inv_freq", "model.rotary_emb.original_inv_freq"]
        empty.model.rotary_emb = LlamaRotaryEmbedding(cfg)
        assert meta_tensors(empty) == []
        for name, m in empty.named_modules():
            if isinstance(m, layer_cls):
                assert all(b.dtype in (torch.int8, torch.uint8) for k, b in m.named_buffers()
                           if k in ("int8_weight", "packed_weight"))
        ids = torch.randint(0, 96, (1, 12))
        with torch.no_grad():
            assert torch.equal(empty.eval()(input_ids=ids).logits, model(input_ids=ids).logits)


def test_fake_quant_model_then_real_layers():
    model, _ = _tiny_llama()
    replace_linear(model, FakeQuantLinear, bits=4, granularity="per_group", group_size=32)
    assert isinstance(model.model.layers[0].mlp.up_proj, FakeQuantLinear)
    ids = torch.randint(0, 96, (1, 10))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert model.model.layers[0].mlp.up_proj.weight.grad is not None
    with torch.no_grad():
        fake = model(input_ids=ids).logits
        replace_linear(model, W4A16Linear, group_size=32)
        assert isinstance(model.model.layers[0].mlp.up_proj, W4A16Linear)
        torch.testing.assert_close(model(input_ids=ids).logits, fake, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [W8A16Linear, W4A16Linear, PackedLinear, FakeQuantLinear])
def test_from_linear_rejects_non_linear(cls):
    with pytest.raises(TypeError, match="linear: expected a torch.nn.Linear, got Conv1d"):
        cls.from_linear(nn.Conv1d(4, 4, 1))


def test_a_group_size_that_does_not_divide_in_features_leaves_a_shorter_last_group():
    """100 inputs in groups of 64: one group of 64 and one of 36 per row, as quant.quantize cuts them."""
    torch.manual_seed(0)
    lin = nn.Linear(100, 8)
    layer = W4A16Linear.from_linear(lin, group_size=64)
    assert layer.scales.shape == (8, 2)
    q = quant.quantize(lin.weight.detach(), 4, False, "per_group", group_size=64)
    torch.testing.assert_close(layer.dequantized_weight(), q.dequantize())
    assert model_nbytes(layer) == 8 * 100 // 2 + 8 * 2 * (4 + 1) + 8 * 4
    x = torch.randn(3, 100)
    torch.testing.assert_close(layer(x), F.linear(x, q.dequantize(), lin.bias))
    fake = FakeQuantLinear.from_linear(lin, group_size=64)
    torch.testing.assert_close(fake.to_packed().dequantized_weight(), q.dequantize())
    with pytest.raises(ValueError, match="group_size: expected an int >= 1, got 0"):
        PackedLinear(64, 8, group_size=0)
def test_other_bad_arguments():
    with pytest.raises(ValueError, match="bits: expected one of 2, 4, got 3"):
        PackedLinear(64, 8, bits=3)
    with pytest.raises(ValueError, match="bits: expected one of 4, got 2"):
        W4A16Linear(64, 8, bits=2)
    with pytest.raises(ValueError, match="in_features: expected an int >= 1, got 0"):
        W8A16Linear(0, 8)
    with pytest.raises(TypeError, match="layer_cls"):
        replace_linear(nn.Sequential(nn.Linear(2, 2)), layer_cls=nn.Linear)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got str"):
        replace_linear("not a model")


def test_packed_linear_mse_clipping_lowers_weight_error():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64)
    with torch.no_grad():
        lin.weight[:, ::37] *= 6          # a few large weights per row stretch the plain grid
    err = lambda layer: float((layer.dequantized_weight() - lin.weight.detach()).pow(2).mean())
    plain = W4A16Linear.from_linear(lin, group_size=64)
    clipped = W4A16Linear.from_linear(lin, group_size=64, clipping="mse")
    assert err(clipped) < err(plain)
