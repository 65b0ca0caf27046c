"""The course LM written as GGUF with gguf's writer, read back with gguf's reader."""
import numpy as np
import pytest
import torch

import coursekit.formats as F
import coursekit.models as M

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T, quants  # noqa: E402

from coursekit.gguf_export import (export_gguf, file_weight_bytes, gguf_name, load_gguf_weights,  # noqa: E402
                                   read_gguf)


@pytest.fixture(scope="module")
def lm():
    return M.load_lm()


@pytest.fixture(scope="module")
def exported(lm, tmp_path_factory):
    model, tok = lm
    out = {}
    for fmt in ("f16", "q8_0", "q4_0"):
        path = tmp_path_factory.mktemp("gguf") / f"tiny_lm-{fmt}.gguf"
        predicted = export_gguf(model, tok, path, fmt)
        out[fmt] = (path, predicted, read_gguf(path))
    return out


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_0"])
def test_storage_accounting_exact_to_the_byte(exported, fmt):
    path, predicted, tensors = exported[fmt]
    assert set(predicted) == set(tensors)
    for name, t in tensors.items():
        assert t.n_bytes == predicted[name], name
        assert t.n_bytes == t.raw.nbytes
    reader = gguf.GGUFReader(str(path))
    assert sum(int(t.n_bytes) for t in reader.tensors) == sum(predicted.values()) == file_weight_bytes(tensors)
    assert path.stat().st_size > sum(predicted.values())          # plus the header and metadata


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_0"])
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


def test_bad_format(lm, tmp_path):
    with pytest.raises(ValueError, match="fmt: expected one of 'f16', 'q8_0', 'q4_0', 'mxfp4'"):
        export_gguf(*lm, tmp_path / "x.gguf", "q5_k")
