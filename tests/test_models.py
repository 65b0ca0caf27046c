"""Tests of coursekit.models: the offline encoder, the shipped tiny LM, and the helpers.

They go through the façade, as the notebooks do; the last tests check that it hands out the very
objects of the modules behind it (coursekit.models.encoder, lm, corpus, devices, hub, dummy_model)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from coursekit import models  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return models.load_encoder()


@pytest.fixture(scope="module")
def lm():
    return models.load_lm()


@pytest.fixture(scope="module")
def lm_ppl(lm):
    return models.perplexity(*lm)


# ---------------------------------------------------------------- encoder

def test_encoder_parameter_count(encoder):
    n = models.count_parameters(encoder[0])
    assert abs(n - 22.7e6) < 0.1e6, n


def test_embed_shape_and_norm(encoder):
    e = models.embed(*encoder, ["A cat sleeps.", "The stock market fell.", "A kitten naps."])
    assert e.shape == (3, 384) and e.dtype == torch.float32 and e.device.type == "cpu"
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[2] > e[0] @ e[1]   # related beats unrelated


def test_eval_pairs_are_balanced():
    related = [r for _, _, r in models.EVAL_PAIRS]
    assert len(related) == 24 and sum(related) == 12


def test_encoder_agreement_self_and_bf16(encoder):
    model, tok = encoder
    same = models.encoder_agreement(model, tok)       # reference: cached fp32 encoder
    assert same.mean_cosine == pytest.approx(1.0, abs=1e-5)
    assert same.max_similarity_diff < 1e-5 and same.ranking_agreement == 1.0

    bf16 = models.encoder_agreement(model.to(torch.bfloat16), tok)
    model.to(torch.float32)
    assert 0.98 < bf16.mean_cosine < same.mean_cosine
    assert bf16.max_similarity_diff > same.max_similarity_diff
    assert "mean cosine" in str(bf16)


def test_encoder_agreement_accepts_embeddings(encoder):
    ref = models.pair_embeddings(*encoder)
    assert ref.shape == (len(models.EVAL_PAIRS), 2, 384)
    assert models.encoder_agreement(*encoder, reference=ref).ranking_agreement == 1.0
    with pytest.raises(TypeError, match="reference: expected None, a .model, tokenizer. tuple"):
        models.encoder_agreement(*encoder, reference="fp32")
    with pytest.raises(ValueError, match=r"reference: expected embeddings of shape \(24, 2, 384\), got"):
        models.encoder_agreement(*encoder, reference=ref[:3])


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(sentences="one sentence"), TypeError, "sentences: expected a list of str (wrap a single sentence"),
    (dict(sentences=[1, 2]), TypeError, "sentences: expected a list of str (wrap a single sentence in a "
                                        "list), got an item of type int"),
    (dict(sentences=[]), ValueError, "sentences: expected a non-empty list of str, got an empty list"),
    (dict(sentences=["a"], batch_size=0), ValueError, "batch_size: expected an int >= 1, got 0"),
])
def test_embed_bad_input(encoder, kwargs, exc, message):
    with pytest.raises(exc) as info:
        models.embed(*encoder, **kwargs)
    assert message in str(info.value)


def test_load_encoder_bad_dtype():
    with pytest.raises(TypeError, match="dtype: expected a torch.dtype, got str"):
        models.load_encoder("fp16")


# ---------------------------------------------------------------- the tiny LM

def test_lm_is_a_small_llama(lm):
    model, tok = lm
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 3e6 < models.count_parameters(model) < 5e6
    assert isinstance(model.model.layers[0].mlp.up_proj, torch.nn.Linear)
    assert tok.eos_token and tok.pad_token and tok.bos_token
    assert len(tok) == model.config.vocab_size == 4096


def test_lm_loads_fast_and_in_bf16():
    import time
    t = time.perf_counter()
    model, _ = models.load_lm(dtype=torch.bfloat16)
    assert time.perf_counter() - t < 5
    assert next(model.parameters()).dtype == torch.bfloat16


def test_perplexity_beats_unigram(lm, lm_ppl):
    model, tok = lm
    unigram = models.unigram_perplexity(tok, models.training_text(), models.heldout_text())
    assert 1 < lm_ppl < 0.5 * unigram


def test_perplexity_dtype_and_text(lm, lm_ppl):
    model, tok = lm
    bf16 = models.perplexity(model.to(torch.bfloat16), tok)
    model.to(torch.float32)
    assert bf16 == pytest.approx(lm_ppl, rel=0.05)
    assert models.perplexity(model, tok, "In the beginning God created the heaven and the earth.") > 1


def test_corpus_splits_are_disjoint():
    train, held = models.training_text(), models.heldout_text()
    assert len(train) > 3_000_000 and 100_000 < len(held) < 400_000
    assert held.split("\n\n")[0] not in train


def test_generate_is_deterministic(lm):
    a = models.generate(*lm, "And God said", max_new_tokens=20)
    b = models.generate(*lm, "And God said", max_new_tokens=20)
    assert a == b and a.startswith("And God said") and len(a) > len("And God said")


def test_perplexity_and_generate_on_a_disk_offloaded_model(lm, lm_ppl, tmp_path):
    # accelerate leaves offloaded weights on "meta": the inputs must follow the execution device
    from transformers import AutoModelForCausalLM
    model, tok = lm
    offloaded = AutoModelForCausalLM.from_pretrained(
        models.TINY_LM_DIR, device_map={"": "disk"}, offload_folder=str(tmp_path), dtype=torch.float32)
    assert next(offloaded.parameters()).device.type == "meta"
    assert models.perplexity(offloaded, tok, max_tokens=512) == pytest.approx(
        models.perplexity(model, tok, max_tokens=512), rel=1e-4)
    assert models.generate(offloaded, tok, "And God said", max_new_tokens=5) == \
        models.generate(model, tok, "And God said", max_new_tokens=5)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(prompt="", max_new_tokens=5), ValueError, "prompt: expected a non-empty str, got ''"),
    (dict(prompt=3, max_new_tokens=5), TypeError, "prompt: expected a non-empty str, got int"),
    (dict(prompt="And", max_new_tokens=0), ValueError, "max_new_tokens: expected an int >= 1, got 0"),
    (dict(prompt="And", max_new_tokens=True), TypeError, "max_new_tokens: expected an int >= 1, got bool"),
])
def test_generate_bad_input(lm, kwargs, exc, message):
    with pytest.raises(exc) as info:
        models.generate(*lm, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(text="   "), ValueError, "text: expected a non-empty str, got '   '"),
    (dict(text=42), TypeError, "text: expected a non-empty str, got int"),
    (dict(text="And"), ValueError, "text: expected at least 2 tokens, got 1"),
    (dict(max_tokens=1), ValueError, "max_tokens: expected an int >= 2, got 1"),
    (dict(max_tokens=512.0), TypeError, "max_tokens: expected an int >= 2, got float"),
    (dict(context=1), ValueError, "context: expected an int >= 2, got 1"),
    (dict(batch_size=0), ValueError, "batch_size: expected an int >= 1, got 0"),
])
def test_perplexity_bad_input(lm, kwargs, exc, message):
    with pytest.raises(exc) as info:
        models.perplexity(*lm, **kwargs)
    assert message in str(info.value)


def test_unigram_perplexity_bad_input(lm):
    tok = lm[1]
    with pytest.raises(TypeError, match="train_text: expected a non-empty str, got bytes"):
        models.unigram_perplexity(tok, train_text=b"abc")
    with pytest.raises(ValueError, match="heldout: expected at least 2 tokens, got 1"):
        models.unigram_perplexity(tok, heldout="And")


def test_hub_name_offline_gives_clear_error(monkeypatch):
    with pytest.raises(models.HubUnavailableError, match=r"load_lm\(\)") as info:
        models.load_lm("someone/not-a-cached-model")
    assert isinstance(info.value, OSError) and "Hub" in str(info.value)
    monkeypatch.setenv("COURSEKIT_LM", "someone/not-a-cached-model")
    with pytest.raises(models.HubUnavailableError):
        models.load_lm()
    monkeypatch.setenv("COURSEKIT_LM", " ")
    with pytest.raises(ValueError, match="COURSEKIT_LM: expected 'smollm2', a Hub id or a local directory"):
        models.load_lm()
    monkeypatch.delenv("COURSEKIT_LM")
    with pytest.raises(ValueError, match="name: expected 'smollm2', a Hub id or a local directory .a non-empty str., got '  '"):
        models.load_lm("  ")
    with pytest.raises(TypeError, match="name: expected 'smollm2', a Hub id or a local directory .a non-empty str., got int"):
        models.load_lm(135)
    with pytest.raises(TypeError, match="dtype: expected a torch.dtype, got str"):
        models.load_lm(dtype="bf16")


def test_quanto_weight_bits_order_perplexity(lm):
    from optimum.quanto import freeze, qint2, qint4, qint8, quantize

    n = 2048   # half the default slice: quanto's CPU kernels are slower than fp32
    fp32 = models.perplexity(*lm, max_tokens=n)
    ppl = {}
    for name, qtype in [("qint8", qint8), ("qint4", qint4), ("qint2", qint2)]:
        model, tok = models.load_lm()
        quantize(model, weights=qtype)
        freeze(model)
        ppl[name] = models.perplexity(model, tok, max_tokens=n)
    assert abs(ppl["qint8"] / fp32 - 1) < 0.03, (fp32, ppl)
    assert ppl["qint2"] > ppl["qint4"] > ppl["qint8"], (fp32, ppl)
    assert ppl["qint2"] > fp32 * 1.05, (fp32, ppl)     # 2-bit visibly breaks it


# ---------------------------------------------------------------- DummyModel and device

def test_dummy_model_is_deterministic():
    x = torch.tensor([[1, 2, 3]])
    a, b, c = models.DummyModel(seed=0), models.DummyModel(seed=0), models.DummyModel(seed=1)
    assert a(x).shape == (1, 3, 64)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    kinds = {type(m).__name__ for m in a.modules()}
    assert {"Embedding", "Linear", "LayerNorm"} <= kinds
    with pytest.raises(ValueError, match="hidden: expected an int >= 1, got 0"):
        models.DummyModel(hidden=0)


def test_count_parameters_counts_a_tied_tensor_once():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    assert models.count_parameters(model) == 80
    model[1].weight = model[0].weight
    assert models.count_parameters(model) == 40


def test_device_helpers():
    dev = models.get_device()
    assert isinstance(dev, torch.device)
    info = models.device_info()
    assert info.device == dev and info.name and dev.type in str(info)
    cpu = models.device_info("cpu")
    from coursekit.kernels.cpu import cpu_flags
    flags = cpu_flags() or set()
    assert cpu.bf16_native == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu.fp16_native == bool(flags & {"avx512_fp16", "amx_fp16"})
    assert ("bf16 native" if cpu.bf16_native else "bf16 emulated") in cpu.summary


def test_device_info_reads_the_cpu_flags(monkeypatch):
    from coursekit.kernels import cpu
    monkeypatch.setattr(cpu, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2", "avx512_bf16"})
    info = models.device_info("cpu")
    assert info.bf16_native and not info.fp16_native
    monkeypatch.setattr(cpu, "cpu_flags", lambda path="/proc/cpuinfo": None)
    assert "fp16 emulated, bf16 emulated" in models.device_info("cpu").summary


def test_model_device_follows_the_weights_and_skips_meta():
    assert models.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert models.model_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("cpu")


# ---------------------------------------------------------------- the façade

def test_facade_hands_out_the_modules_own_objects():
    # one definition per name: the cached functions must be the very ones, or cache_clear()
    # (scripts/train_lm.py) would clear a copy
    from coursekit.models import corpus, devices, dummy_model, encoder, evaluation, hub, lm, smollm2
    for module in (corpus, devices, dummy_model, encoder, evaluation, hub, lm, smollm2):
        for name in module.__all__:
            if name in models.__all__:
                assert getattr(models, name) is getattr(module, name), name
    assert models.__all__ and all(hasattr(models, name) for name in models.__all__)
    assert models.training_text is corpus.training_text and models.TRAIN_FILE is corpus.TRAIN_FILE
    assert models.SMOLLM2_CARD == smollm2.MODEL_CARD and smollm2.MODEL_CARD.is_file()


def test_importing_the_facade_does_not_import_transformers():
    import subprocess
    import sys
    code = "import sys, coursekit.models; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
