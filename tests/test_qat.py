"""Tests of coursekit.qat: the layers it builds, and that a short QAT run beats PTQ at the same precision."""

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from coursekit import layers, models, qat  # noqa: E402


# ---------------------------------------------------------------- small pieces, on a toy layer
def _toy(seed=0, in_features=32, out_features=8):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def test_ste_round_rounds_forward_and_passes_gradient_back():
    x = torch.tensor([-1.6, -0.4, 0.3, 2.5], requires_grad=True)
    y = qat.ste_round(x)
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(y.detach(), torch.round(x.detach()))
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_learned_scale_starts_equal_to_min_max_fake_quant():
    lin = _toy()
    fake = layers.FakeQuantLinear.from_linear(copy.deepcopy(lin), bits=2, symmetric=False,
                                              granularity="per_group", group_size=16)
    learned = qat.LearnedScaleLinear.from_linear(copy.deepcopy(lin), bits=2, group_size=16)
    x = torch.randn(3, 32)
    assert torch.allclose(fake(x), learned(x), atol=1e-6)
    assert learned.scale.shape == (8, 2) and learned.scale.requires_grad


def test_learned_scale_gets_a_gradient_and_its_packed_layer_keeps_it():
    learned = qat.LearnedScaleLinear.from_linear(_toy(), bits=2, group_size=16)
    x = torch.randn(3, 32)
    learned(x).pow(2).sum().backward()
    assert learned.scale.grad is not None and learned.scale.grad.abs().sum() > 0
    with torch.no_grad():                   # a scale min/max would never pick
        learned.scale.mul_(0.7)
    packed = learned.to_packed()
    assert isinstance(packed, layers.PackedLinear)
    assert torch.allclose(packed(x), learned(x), atol=1e-5)
    assert torch.allclose(packed.dequantized_weight(), learned.quantized_weight(), atol=1e-6)


def test_to_real_quant_reproduces_the_fake_quantized_model():
    model = nn.Sequential(_toy(1, 32, 32), nn.ReLU(), _toy(2, 32, 16))
    fake = qat.to_fake_quant(copy.deepcopy(model), bits=4, group_size=16, exclude=())
    x = torch.randn(5, 32)
    expected = fake(x)
    real = qat.to_real_quant(fake)
    assert all(isinstance(real[i], layers.PackedLinear) for i in (0, 2))
    assert torch.allclose(real(x), expected, atol=1e-5)


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel", "per_group"])
def test_every_granularity_packs_exactly(granularity):
    lin = _toy(3, 32, 8)
    x = torch.randn(4, 32)
    fake = qat.to_fake_quant(copy.deepcopy(lin), bits=2, granularity=granularity, group_size=16)
    learned = qat.to_learned_scale(copy.deepcopy(lin), bits=2, granularity=granularity, group_size=16)
    assert torch.allclose(fake(x), learned(x), atol=1e-6)        # same grid before any training
    n_scales = {"per_tensor": 1, "per_channel": 8, "per_group": 16}[granularity]
    assert learned.scale.numel() == n_scales
    for layer in (fake, learned):
        expected = layer(x)
        packed = qat.to_real_quant(layer)
        assert isinstance(packed, layers.PackedLinear)
        assert torch.allclose(packed(x), expected, atol=1e-5)


def test_batches_are_seeded_windows():
    ids = torch.arange(1000)
    a = next(qat.batches(ids, 4, 16, seed=3))
    b = next(qat.batches(ids, 4, 16, seed=3))
    assert a.shape == (4, 16) and torch.equal(a, b)
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(4, 15, dtype=a.dtype))   # contiguous windows
    with pytest.raises(ValueError, match="seq_len: expected fewer than the text's 10 tokens, got 16"):
        next(qat.batches(torch.arange(10), 2, 16))


def test_qat_does_not_import_the_course_models():
    # the text and the yardstick come in as arguments (notebook 09 passes the course's own)
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(qat))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "models" not in imported


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="bits: expected an int from 2 to 8, got 1"):
        qat.LearnedScaleLinear(32, 8, bits=1)
    with pytest.raises(ValueError, match="steps: expected an int >= 1, got 0"):
        qat.qat_finetune(nn.Linear(2, 2), tokenizer=None, steps=0, text="", perplexity=models.perplexity)
    with pytest.raises(TypeError, match="perplexity: expected a function"):
        qat.qat_finetune(nn.Linear(2, 2), tokenizer=None, text="", perplexity=4.2)
    with pytest.raises(TypeError, match="text: expected a str"):
        qat.training_ids(tokenizer=None, text=None)
    with pytest.raises(ValueError, match="bits: expected one of 2, 4, got 8"):     # 8 bits: W8A16Linear
        qat.to_real_quant(qat.to_fake_quant(_toy(), bits=8, exclude=()))


# ---------------------------------------------------------------- the claim of notebook 09
@pytest.fixture(scope="module")
def lm():
    return models.load_lm()


def test_short_qat_run_beats_ptq_at_the_same_precision(lm):
    model, tok = lm
    tokens = 2048                            # half the default slice: same yardstick, half the time
    grid = dict(bits=2, granularity="per_tensor")   # notebook 09's setting, where PTQ clearly hurts
    ppl_ptq = models.perplexity(qat.ptq(copy.deepcopy(model), **grid), tok, max_tokens=tokens)

    result = qat.qat_finetune(qat.to_fake_quant(copy.deepcopy(model), **grid), tok, steps=20,
                              eval_every=20, eval_tokens=tokens, seed=0,
                              text=models.training_text(), perplexity=models.perplexity)
    # step 0 is the fake-quantized model before training: the same numbers as real PTQ
    assert result.log[0][0] == 0 and result.log[0][1] == pytest.approx(ppl_ptq, rel=1e-4)
    ppl_qat = models.perplexity(qat.to_real_quant(result.model), tok, max_tokens=tokens)
    assert ppl_qat == pytest.approx(result.log[-1][1], rel=1e-4)   # real quantization changes nothing
    assert ppl_qat < ppl_ptq, (ppl_qat, ppl_ptq)
