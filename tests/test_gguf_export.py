"""The course LM written as GGUF with gguf's writer, read back with gguf's reader."""
import numpy as np
import pytest
import torch

import coursekit.formats as F
import coursekit.models as M

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T, quants  # noqa: E402

from coursekit.gguf_export import (as_exported, export_gguf, file_weight_bytes, gguf_name, load_gguf_weights,  # noqa: E402
                                   predicted_bytes, read_gguf, tensor_types, tokenizer_pre)


@pytest.fixture(scope="module")
def lm():
    return M.load_lm()


@pytest.fixture(scope="module")
def exported(lm, tmp_path_factory):
    model, tok = lm
    out = {}
    for fmt in ("f16", "q8_0", "q4_0", "q4_1"):
        path = tmp_path_factory.mktemp("gguf") / f"tiny_lm-{fmt}.gguf"
        predicted = export_gguf(model, tok, path, fmt)
        out[fmt] = (path, predicted, read_gguf(path))
    return out


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_0", "q4_1"])
def test_storage_accounting_exact_to_the_byte(exported, fmt):
    path, predicted, tensors = exported[fmt]
    assert set(predicted) == set(tensors)
    for name, t in tensors.items():
        assert t.n_bytes == predicted[name], name
        assert t.n_bytes == t.raw.nbytes
    reader = gguf.GGUFReader(str(path))
    assert sum(int(t.n_bytes) for t in reader.tensors) == sum(predicted.values()) == file_weight_bytes(tensors)
    assert path.stat().st_size > sum(predicted.values())          # plus the header and metadata


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_0", "q4_1"])
def test_tensors_decode_as_gguf_and_as_coursekit_roundtrip(exported, lm, fmt):
    model, _ = lm
    _, _, tensors = exported[fmt]
    sd = model.state_dict()
    for hf_name, p in sd.items():
        name = gguf_name(hf_name)
        if name == "output.weight":
            assert name not in tensors                            # tied to token_embd, not stored
            continue
        t = tensors[name]
        w = p.detach().float()
        if p.dim() == 1:
            assert t.type == "f32" and torch.equal(t.values, w)
            continue
        assert t.type == fmt
        if fmt == "f16":
            assert torch.equal(t.values, w.half().float())
        else:
            assert torch.equal(t.values, F.roundtrip(w, fmt)), name   # the rope row order is undone
            ref = quants.dequantize(t.raw, T[fmt.upper()])         # gguf's decoder on the file's bytes
            assert t.values.numel() == ref.size


def test_qk_rows_are_in_llama_cpp_order(exported, lm):
    model, _ = lm
    _, _, tensors = exported["f16"]
    import gguf as g
    reader = g.GGUFReader(str(exported["f16"][0]))
    raw = {t.name: np.array(t.data) for t in reader.tensors}["blk.0.attn_q.weight"].astype(np.float32)
    w = model.model.layers[0].self_attn.q_proj.weight.detach().half().float().numpy()
    head = w[:64]
    # ggml's rotary pairs adjacent rows: row 1 of the file is row 32 of the head in HF order.
    assert np.array_equal(raw[1], head[32]) and np.array_equal(raw[2], head[1])


def test_roundtrip_perplexity(exported, lm):
    model, tok = lm
    base = M.perplexity(model, tok)
    ppl = {}
    for fmt in ("f16", "q8_0", "q4_0"):
        fresh, _ = M.load_lm()
        ppl[fmt] = M.perplexity(load_gguf_weights(fresh, exported[fmt][0]), tok)
    assert abs(ppl["f16"] - base) / base < 1e-3
    assert abs(ppl["q8_0"] - base) / base < 2e-3
    assert base < ppl["q4_0"] < base * 1.05


def test_metadata(exported):
    reader = gguf.GGUFReader(str(exported["q4_0"][0]))
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert int(fields["llama.block_count"].parts[-1][0]) == 4
    assert int(fields["llama.embedding_length"].parts[-1][0]) == 256
    assert len(fields["tokenizer.ggml.tokens"].data) == 4096
    # what llama.cpp's convert_hf_to_gguf.py writes: GPT-2's split rule (not "default", which splits
    # "'s" and " (" otherwise), no BOS added (the tokenizer adds none), the quantization version
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert fields["tokenizer.ggml.add_eos_token"].contents() is False
    assert fields["general.quantization_version"].contents() == gguf.GGML_QUANT_VERSION == 2
    assert fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q4_0


def test_tokenizer_pre_is_read_from_the_tokenizer(lm):
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    _, tok = lm
    assert tokenizer_pre(tok) == "gpt-2"
    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert tokenizer_pre(PreTrainedTokenizerFast(tokenizer_object=backend)) == "smollm"
    backend.pre_tokenizer = pre_tokenizers.Whitespace()          # a split rule llama.cpp has no name for
    with pytest.raises(ValueError, match="tokenizer: expected a byte-level BPE tokenizer.*Whitespace"):
        tokenizer_pre(PreTrainedTokenizerFast(tokenizer_object=backend))


# a mix: the first entry that matches a matrix decides its type
MIX = {"token_embd.weight": "q8_0", "blk.3.*": "f16", "blk.0.attn_k.weight": "f32", "*": "q4_0"}


def test_tensor_types_of_a_mix(lm):
    model, _ = lm
    types = tensor_types(model, MIX)
    assert types["token_embd.weight"] == "q8_0"
    assert types["blk.3.ffn_up.weight"] == "f16" and types["blk.3.attn_norm.weight"] == "f32"
    assert types["blk.0.attn_k.weight"] == "f32" and types["blk.0.attn_q.weight"] == "q4_0"
    assert types["output_norm.weight"] == "f32" and "output.weight" not in types      # tied
    uniform = tensor_types(model, "q8_0")
    assert uniform.keys() == types.keys()
    assert all(t == ("f32" if name.endswith("norm.weight") else "q8_0") for name, t in uniform.items())


def test_mixed_export_exact_to_the_byte_and_roundtrip(lm, tmp_path):
    model, tok = lm
    path = tmp_path / "mix.gguf"
    predicted = export_gguf(model, tok, path, MIX)
    assert predicted == predicted_bytes(model, MIX)             # the plan, before quantizing anything
    tensors = read_gguf(path)
    types = tensor_types(model, MIX)
    sd = {gguf_name(n): p.detach().float() for n, p in model.state_dict().items()}
    for name, t in tensors.items():
        assert t.type == types[name] and t.n_bytes == predicted[name] == t.raw.nbytes, name
        w = sd[name]
        expected = {"f32": w, "f16": w.half().float()}.get(t.type)
        expected = F.roundtrip(w, t.type) if expected is None else expected
        assert torch.equal(t.values, expected), name
    assert gguf.GGUFReader(str(path)).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q4_0


@pytest.mark.parametrize("fmt, error, message", [
    ({"blk.*": "q4_0", "blk.3.*": "f16", "*": "q8_0"}, ValueError,
     r"fmt\['blk.3.\*'\]: expected an entry that decides at least one matrix, got every matrix it matches is "
     r"decided by the earlier entry 'blk.\*'"),
    ({"blk.9.*": "f16", "*": "q8_0"}, ValueError, r"fmt\['blk.9.\*'\]: .* it matches no matrix of this model"),
    ({"blk.*": "q4_0"}, ValueError, r"fmt: expected a type for every matrix .*'\*' entry.*'token_embd.weight'"),
    ({"*": "q5_k"}, ValueError, r"fmt\['\*'\]: expected one of 'f16', 'q8_0', 'q4_0', 'q4_1', 'mxfp4', 'f32', got 'q5_k'"),
    ({"output_norm.weight": "q8_0", "*": "q8_0"}, ValueError, r"fmt\['output_norm.weight'\]: expected 'f32'"),
    ({}, ValueError, "fmt: expected a type name"),
    (["q4_0"], TypeError, r"fmt: expected a type name .* got list"),
])
def test_bad_mix_names_the_entry(lm, tmp_path, fmt, error, message):
    with pytest.raises(error, match=message):
        export_gguf(*lm, tmp_path / "x.gguf", fmt)
    assert not (tmp_path / "x.gguf").exists()                  # checked before anything is written


def test_bad_format(lm, tmp_path):
    with pytest.raises(ValueError, match="fmt: expected one of 'f16', 'q8_0', 'q4_0', 'q4_1', 'mxfp4'"):
        export_gguf(*lm, tmp_path / "x.gguf", "q5_k")


# ---------------------------------------------------------------- SmolLM2: a real LLM, grouped-query attention

SMOL_MIX = {"token_embd.weight": "q8_0", "blk.29.*": "f16", "*": "q4_0"}


@pytest.fixture(scope="module")
def smol_exported(tmp_path_factory):
    from coursekit.models import smollm2
    if not smollm2.installed():
        pytest.skip(f"SmolLM2 is not installed ({smollm2.INSTALL_COMMAND})")
    model, tok = M.load_lm(M.SMOLLM2)
    path = tmp_path_factory.mktemp("gguf") / "smollm2-mix.gguf"
    predicted = export_gguf(model, tok, path, SMOL_MIX)
    return model, path, predicted


def test_smollm2_exact_to_the_byte_and_roundtrip(smol_exported):
    from coursekit.gguf_export import _rope_rows
    model, path, predicted = smol_exported
    stored = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    assert set(stored) == set(predicted) and len(stored) == 30 * 9 + 2      # tied output not stored
    types = tensor_types(model, SMOL_MIX)
    for hf_name, p in model.state_dict().items():
        name = gguf_name(hf_name)
        if name == "output.weight":
            continue
        t, w = stored[name], p.detach().float()
        assert t.tensor_type.name.lower() == types[name] and int(t.n_bytes) == predicted[name], name
        if not name.startswith(("token_embd", "blk.0.", "blk.29.")):   # values: a layer of each type
            continue
        kind, shape = types[name], tuple(w.shape)
        if kind in ("f32", "f16"):
            values = torch.from_numpy(np.array(t.data, dtype=np.float32)).reshape(shape)
            expected = w if kind == "f32" else w.half().float()
        else:
            values = F.decode(F.Encoded.from_gguf_bytes(np.array(t.data), shape, kind))
            expected = F.roundtrip(w, kind)
        heads = {"attn_q": 9, "attn_k": 3}.get(name.split(".")[-2])
        if heads:                                         # K has 3 heads under grouped-query attention
            values = _rope_rows(values, heads, inverse=True)
        assert torch.equal(values, expected), name


def test_smollm2_qk_rows_use_each_projections_head_count(smol_exported):
    model, path, _ = smol_exported
    raw = {t.name: np.array(t.data).astype(np.float32) for t in gguf.GGUFReader(str(path)).tensors
           if t.name in ("blk.29.attn_q.weight", "blk.29.attn_k.weight")}
    attn = model.model.layers[29].self_attn
    for name, proj, heads in (("attn_q", attn.q_proj, 9), ("attn_k", attn.k_proj, 3)):
        w = proj.weight.detach().half().float().numpy()
        assert w.shape[0] == heads * 64
        last = w[(heads - 1) * 64:]                       # the last head: wrong if the head count is
        file_last = raw[f"blk.29.{name}.weight"][(heads - 1) * 64:]
        assert np.array_equal(file_last[1], last[32]) and np.array_equal(file_last[2], last[1]), name


def test_smollm2_tokenizer_metadata_is_its_own_files(smol_exported):
    from coursekit.models import smollm2
    _, path, _ = smol_exported
    ours = gguf.GGUFReader(str(path)).fields
    source = gguf.GGUFReader(str(smollm2.gguf_path())).fields
    keys = {k for k in source if k.startswith("tokenizer.")}
    assert keys == {k for k in ours if k.startswith("tokenizer.")}
    assert "tokenizer.chat_template" in keys
    for key in keys:
        assert ours[key].types == source[key].types, key
        assert ours[key].contents() == source[key].contents(), key
    assert ours["tokenizer.ggml.pre"].contents() == "smollm"
    assert ours["llama.attention.head_count_kv"].contents() == 3
    assert ours["general.quantization_version"].contents() == 2


def test_smollm2_as_q4_1_is_the_shipped_file_byte_for_byte(smol_exported, tmp_path):
    """SmolLM2's weights come from a Q4_1 file (token_embd in Q8_0): quantized again with the types of
    that file, every block of every matrix is the file's own, scale, minimum and codes. A round trip
    this exact needs Q4_1's rounding and byte layout to be llama.cpp's, and the Q/K rows in its order."""
    from coursekit.models import smollm2
    model, _, _ = smol_exported
    source = {t.name: t for t in gguf.GGUFReader(str(smollm2.gguf_path())).tensors}
    types = {name: t.tensor_type.name.lower() for name, t in source.items() if len(t.shape) == 2}
    assert set(types.values()) == {"q4_1", "q8_0"} and types["token_embd.weight"] == "q8_0"
    path = tmp_path / "smollm2-q4_1.gguf"
    predicted = export_gguf(model, M.load_lm(M.SMOLLM2)[1], path,
                            {"token_embd.weight": "q8_0", "*": "q4_1"})
    ours = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    assert set(ours) == set(source)
    for name, t in source.items():
        assert ours[name].tensor_type == t.tensor_type and int(ours[name].n_bytes) == predicted[name], name
        assert np.array_equal(np.array(ours[name].data), np.array(t.data)), name


def test_as_exported_holds_the_files_values_and_gives_the_weights_back(lm, exported):
    """Scoring inside as_exported is scoring the file: the same values as the file read back, bit for
    bit; the weights are the original ones afterwards, also after an error inside."""
    model, _ = lm
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    path = exported["q4_0"][0]
    with as_exported(model, "q4_0"):
        inside = {n: p.detach().clone() for n, p in model.state_dict().items()}
    file_model, _ = M.load_lm()
    load_gguf_weights(file_model, path)
    for n, p in file_model.state_dict().items():
        assert torch.equal(inside[n], p), n
        assert torch.equal(model.state_dict()[n], before[n]), n
    assert not torch.equal(inside["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    with pytest.raises(RuntimeError, match="boom"):
        with as_exported(model, {"blk.0.*": "f16", "*": "q8_0"}):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())
    with pytest.raises(ValueError, match="fmt"):
        with as_exported(model, "q5_k"):
            pass
