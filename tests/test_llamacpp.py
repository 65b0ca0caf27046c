"""llama.cpp as an independent client: it reads the course's GGUF files as the package does.

The tests that run llama.cpp skip when it is not built (`make llama-cpp`, optional). When it is, the
package (the file read back with gguf and decoded by coursekit) and llama.cpp (the file itself) must
see the same tokens, agree on perplexity within 0.1 % on the same slices scored the same way, and
continue a prompt with the same greedy tokens. With Q8_0/Q4_0 weights llama.cpp rounds the inputs of
its matrix products to Q8_0 as well: the package is scored with the same rounding
(``llamacpp.q8_activations``; without it SmolLM2's files differ by 0.4 %). That removes the bias, not
the noise of the rounding: through SmolLM2's 30 layers, activations that round one way in one engine
and the other way in the other still move single slices by up to ~1 % (measured: 1.2 %, pooled over
4 slices 0.39 % for Q8_0 and 0.14 % for Q4_0), so its quantized files are held to 1 %. Everything
else (both F16 files, the course LM's Q8_0 and Q4_0) agrees within 0.1 %; measured within 0.01 %.
"""
import contextlib

import pytest

import coursekit.models as M
from coursekit import llamacpp
from coursekit.gguf_export import export_gguf, load_gguf_weights

needs_llama_cpp = pytest.mark.skipif(
    not llamacpp.available(),
    reason=f"llama.cpp is not built: run `make llama-cpp` (or set {llamacpp.ENV} to a folder with its tools)")

FORMATS = ("f16", "q8_0", "q4_0")
# each model on its own evaluation: the course LM on held-out KJV chapters in windows of its 256-token
# context (like models.perplexity), SmolLM2 on the course's modern held-out slices of 512 tokens
EVAL = {None: dict(n_slices=8, tokens=256, source="kjv"), M.SMOLLM2: dict(n_slices=4, tokens=512)}


def test_not_built_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv(llamacpp.ENV, str(tmp_path))
    assert not llamacpp.available()
    (tmp_path / "x.gguf").touch()
    with pytest.raises(llamacpp.LlamaCppNotBuiltError, match="llama.cpp is not built: llama-perplexity is not "
                       "in .* Run `make llama-cpp`"):
        llamacpp.perplexity(tmp_path / "x.gguf", "some text")
    with pytest.raises(FileNotFoundError, match="llama.cpp is not built: llama-simple"):
        llamacpp.generate(tmp_path / "x.gguf", "In the beginning")


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: expected an existing .gguf file"):
        llamacpp.perplexity(tmp_path / "missing.gguf", "text")
    (tmp_path / "x.gguf").touch()
    with pytest.raises(ValueError, match="tokens: expected a multiple of 256"):
        llamacpp.perplexity(tmp_path / "x.gguf", "text", tokens=300)
    with pytest.raises(TypeError, match="slices: expected a non-empty str or a non-empty list"):
        llamacpp.perplexity(tmp_path / "x.gguf", [])
    with pytest.raises(FileNotFoundError, match="path: expected an existing .gguf file"):
        llamacpp.tokens_per_second(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="prompt: expected a non-empty str"):
        llamacpp.tokens_per_second(tmp_path / "x.gguf", prompt="  ")
    with pytest.raises(ValueError, match="max_new_tokens: expected"):
        llamacpp.generate(tmp_path / "x.gguf", "text", max_new_tokens=0)


@pytest.fixture(scope="module", params=[None, M.SMOLLM2], ids=["course_lm", "smollm2"])
def exports(request, tmp_path_factory):
    if not llamacpp.available():
        pytest.skip("llama.cpp is not built: run `make llama-cpp`")
    if request.param == M.SMOLLM2:
        from coursekit.models import smollm2
        if not smollm2.installed():
            pytest.skip(f"SmolLM2 is not installed ({smollm2.INSTALL_COMMAND})")
    model, tok = M.load_lm(request.param)
    slices = M.heldout_slices(tok, **EVAL[request.param])
    folder = tmp_path_factory.mktemp("llamacpp")
    files = {}
    for fmt in FORMATS:
        files[fmt] = folder / f"model-{fmt}.gguf"
        export_gguf(model, tok, files[fmt], fmt)
    return request.param, tok, slices, files


@needs_llama_cpp
def test_same_tokens(exports):
    _, tok, slices, files = exports
    tokens = EVAL[exports[0]]["tokens"]
    for text in slices:
        ours = tok(text, add_special_tokens=False)["input_ids"]
        theirs = llamacpp.tokenize(files["q4_0"], text)
        assert theirs[:tokens] == ours[:tokens]
        assert theirs == ours


@needs_llama_cpp
@pytest.mark.parametrize("fmt", FORMATS)
def test_perplexity_agrees(exports, fmt):
    name, tok, slices, files = exports
    tokens = EVAL[name]["tokens"]
    model, _ = M.load_lm(name)
    load_gguf_weights(model, files[fmt])
    # with quantized weights llama.cpp rounds each product's input to Q8_0 too: the package does the same
    with llamacpp.q8_activations(model) if fmt != "f16" else contextlib.nullcontext():
        ours = M.perplexity_slices(model, tok, slices, tokens=tokens)
    theirs = llamacpp.perplexity(files[fmt], slices, tokens=tokens)
    assert theirs.tokens == ours.tokens
    pooled, per_slice = (1e-2, 3e-2) if (name == M.SMOLLM2 and fmt != "f16") else (1e-3, 2e-3)
    assert abs(theirs.pooled / ours.pooled - 1) < pooled, (ours, theirs)
    for a, b in zip(ours.slices, theirs.slices):
        assert abs(b / a - 1) < per_slice


@needs_llama_cpp
def test_greedy_generation_matches(exports):
    name, tok, _, files = exports
    model, _ = M.load_lm(name)
    load_gguf_weights(model, files["q8_0"])
    prompt = "And the LORD said unto Moses," if name is None else "The capital of France is"
    ours = M.generate(model, tok, prompt, max_new_tokens=8)
    theirs = llamacpp.generate(files["q8_0"], prompt, max_new_tokens=8)
    assert theirs == ours


@needs_llama_cpp
def test_tokens_per_second_is_llama_cpps_own_timing(exports):
    _, _, _, files = exports
    rate = llamacpp.tokens_per_second(files["q4_0"], new_tokens=16)
    assert 1 < rate < 1e5
