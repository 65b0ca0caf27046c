"""coursekit.kvcache: bytes by hand, exact storage, the per-channel argument, generate, the window."""
import math

import pytest
import torch
from transformers import LlamaConfig

from coursekit import kvcache, models, quant


def _llama(layers=32, heads=32, kv_heads=32, head_dim=128):
    return LlamaConfig(num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       hidden_size=heads * head_dim, head_dim=head_dim, intermediate_size=64, vocab_size=32)


def test_kv_bytes_by_hand():
    # Llama-2-7B, 4,096 tokens, fp16: 2 x 32 x 32 x 128 x 4096 x 2 bytes = 2 GiB
    assert kvcache.kv_bytes(_llama(), 4096) == 2 * 32 * 32 * 128 * 4096 * 2 == 2 ** 31
    # grouped-query attention counts KV heads, not query heads (SmolLM2: 3 of 9)
    assert kvcache.kv_bytes(_llama(30, 9, 3, 64), 1) == 23_040
    assert kvcache.kv_bytes(_llama(30, 9, 3, 64), 10, batch=4, dtype=torch.float32) == 23_040 * 2 * 10 * 4
    assert kvcache.kv_bytes({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}, 3) == \
        2 * 2 * 4 * 16 * 3 * 2      # no num_key_value_heads: multi-head; head_dim = hidden / heads


@pytest.mark.parametrize("call, name", [
    (lambda: kvcache.kv_bytes(_llama(), -1), "tokens"),
    (lambda: kvcache.kv_bytes(_llama(), 8, batch=0), "batch"),
    (lambda: kvcache.kv_bytes(_llama(), 8, dtype="fp16"), "dtype"),
    (lambda: kvcache.kv_bytes(object(), 8), "config"),
    (lambda: kvcache.QuantizedKVCache(bits=3), "bits"),
    (lambda: kvcache.QuantizedKVCache(key_axis="row"), "key_axis"),
    (lambda: kvcache.QuantizedKVCache(value_axis=0), "value_axis"),
    (lambda: kvcache.QuantizedKVCache(group_size=30), "group_size"),
    (lambda: kvcache.QuantizedKVCache(residual_length=-1), "residual_length"),
])
def test_errors_name_the_argument(call, name):
    with pytest.raises((TypeError, ValueError), match=f"^{name}"):
        call()


def _kv(tokens, heads=3, dim=64, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, heads, tokens, dim, generator=g).to(dtype), torch.randn(1, heads, tokens, dim, generator=g).to(dtype)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_nbytes_exact(bits):
    k, v = _kv(100, dtype=torch.float16)
    cache = kvcache.QuantizedKVCache(bits, "channel", "token", residual_length=32)
    cache.update(k, v, 0)
    # 100 tokens, window 32: two 32-token blocks leave it (64 quantized), 36 stay exact in fp16
    elements = 3 * 64 * 64
    codes = 2 * elements * bits // 8
    key_params = 3 * 64 * 2 * (2 + 1)        # one fp16 scale + int8 zero point per channel per block
    value_params = 3 * 64 * (2 + 1)          # one per token (whole head)
    window = 2 * 3 * 36 * 64 * 2
    assert cache.nbytes == codes + key_params + value_params + window
    assert kvcache.cache_nbytes(cache) == cache.nbytes


def test_under_a_third_of_fp16_at_4k():
    cfg = _llama(30, 9, 3, 64)
    cache = kvcache.QuantizedKVCache(4, "channel", "token", residual_length=32)
    k, v = _kv(4096, dtype=torch.float16)
    for layer in range(30):
        cache.update(k, v, layer)
    assert cache.nbytes / kvcache.kv_bytes(cfg, 4096) <= 0.3


def test_per_channel_beats_per_token_on_outlier_channels():
    k, _ = _kv(64)
    k[..., [5, 40]] = k[..., [5, 40]] * 10 + 20          # fixed outlier channels, as in real keys
    errors = {}
    for axis in ("channel", "token"):
        layer = kvcache.QuantizedKVLayer(4, axis, "token", None, 0)
        layer.update(k, k)
        errors[axis] = quant.quantization_error(k, layer.quantized_keys.dequantize(torch.float32))
    assert errors["channel"] < errors["token"] / 4


def test_dequantize_matches_quant_quantize():
    k, v = _kv(32)
    layer = kvcache.QuantizedKVLayer(4, "channel", "token", None, 0)
    layer.update(k, v)
    per_channel = quant.quantize(k.transpose(-1, -2).contiguous(), 4, granularity="per_group", group_size=32)
    assert torch.allclose(layer.quantized_keys.dequantize(torch.float32),
                          per_channel.dequantize().transpose(-1, -2), atol=1e-6)
    per_token = quant.quantize(v, 4, granularity="per_group", group_size=64)
    assert torch.allclose(layer.quantized_values.dequantize(torch.float32), per_token.dequantize(), atol=1e-6)


def test_window_keeps_last_tokens_exact():
    layer = kvcache.QuantizedKVLayer(2, "channel", "token", None, 32)
    k, v = _kv(200)
    for start in range(0, 200, 7):                      # prefill-like and decode-like steps mixed
        keys, values = layer.update(k[..., start:start + 7, :], v[..., start:start + 7, :])
    assert keys.shape == k.shape and layer.get_seq_length() == 200
    assert torch.equal(keys[..., -32:, :], k[..., -32:, :]) and torch.equal(values[..., -32:, :], v[..., -32:, :])
    assert not torch.equal(keys[..., :32, :], k[..., :32, :])          # old tokens are quantized
    assert layer.quantized_keys.tokens % 32 == 0 and 32 <= layer.keys.shape[-2] < 64


def test_generate_with_the_cache_on_the_course_lm():
    model, tok = models.load_lm()
    ids = tok("In the beginning God created the heaven and the earth. And the earth was",
              return_tensors="pt").input_ids
    reference = model.generate(ids, max_new_tokens=20, do_sample=False)
    cache = kvcache.QuantizedKVCache(8, residual_length=4)
    out = model.generate(ids, max_new_tokens=20, do_sample=False, past_key_values=cache)
    assert out.shape == reference.shape
    assert (out == reference).float().mean() > 0.9                      # 8 bits barely moves greedy decoding
    assert cache.get_seq_length() == out.shape[1] - 1 and cache.nbytes > 0
    assert len(cache.layers) == model.config.num_hidden_layers


def test_chunked_perplexity_exact_cache_equals_one_pass():
    model, tok = models.load_lm()
    slices = models.heldout_slices(tok, n_slices=2, tokens=64, source="kjv")
    chunked = kvcache.chunked_perplexity(model, tok, slices, tokens=64, chunk=16)
    whole = models.perplexity_slices(model, tok, slices, tokens=64)
    assert math.isclose(chunked.pooled, whole.pooled, rel_tol=1e-4)
    worse = kvcache.chunked_perplexity(model, tok, slices, lambda: kvcache.QuantizedKVCache(2, "token", "token", 16, 0),
                                       tokens=64, chunk=16)
    assert worse.pooled > chunked.pooled
