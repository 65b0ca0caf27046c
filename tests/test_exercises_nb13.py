"""Exercises of notebook 13: the references pass, plausible mistakes fail, the references agree with kvcache."""
import pytest
import torch
from transformers import LlamaConfig

from coursekit import kvcache, quant
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb13_kv_cache as nb13
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    reset_attempts()


NB13 = exercises_in(nb13)
IDS = [e.id for e in NB13]


def test_registered():
    assert IDS == ["13.kv_bytes_per_token", "13.key_axis", "13.dequantize_keys"]
    assert {e.id for e in list_exercises("13")} == set(IDS)
    assert get_exercise("13.kv_bytes_per_token").forbid == ("coursekit.kvcache.kv_bytes",)


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    assert evaluate(exercise_id, get_exercise(exercise_id).reference).status == "passed"


WRONG = {
    "13.kv_bytes_per_token": [lambda layers, heads, kv_heads, head_dim, bits: 2 * layers * heads * head_dim * bits / 8,
                              lambda layers, heads, kv_heads, head_dim, bits: layers * kv_heads * head_dim * bits / 8],
    "13.key_axis": ["a", "c", "d"],
    "13.dequantize_keys": [lambda c, s, z: s * (c.float() - z.float()),              # broadcasts along tokens
                           lambda c, s, z: s[:, None, :] * (c - z[:, None, :]).float()],  # int8 overflow
}


@pytest.mark.parametrize("exercise_id", IDS)
def test_plausible_mistakes_fail(exercise_id):
    for wrong in WRONG[exercise_id]:
        reset_attempts()
        r = evaluate(exercise_id, wrong)
        assert r.status in ("failed", "error"), (wrong, r.message)


def test_references_agree_with_kvcache():
    for layers, heads, kv_heads, head_dim, bits in nb13._per_token_cases():
        if bits in (16, 32):
            cfg = LlamaConfig(num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                              head_dim=head_dim, hidden_size=heads * head_dim)
            dtype = torch.float16 if bits == 16 else torch.float32
            assert nb13.kv_bytes_per_token(layers, heads, kv_heads, head_dim, bits) == kvcache.kv_bytes(cfg, 1, dtype=dtype)
    k = torch.randn(1, 3, 32, 64)
    layer = kvcache.QuantizedKVLayer(4, "channel", "token", None, 0)
    layer.update(k, k)
    q = quant.quantize(k[0].transpose(-1, -2).contiguous(), 4, granularity="per_group", group_size=32)
    ours = nb13.dequantize_keys(q.data.transpose(-1, -2), q.scale[..., 0], q.zero_point[..., 0])
    assert torch.allclose(ours, layer.quantized_keys.dequantize(torch.float32)[0], atol=1e-6)
