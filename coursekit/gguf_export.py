"""The course LM as a real GGUF file, written and read with the ``gguf`` package (llama.cpp's own).

GGUF is the single-file format of llama.cpp and the tools built on it (Ollama, LM Studio): a
header of key-value metadata (architecture, sizes, tokenizer), then every tensor, aligned, in its
ggml type. ``export_gguf(model, tokenizer, path, fmt)`` writes the tiny Llama with its matrices in
F16, Q8_0, Q4_0 or MXFP4 (computed by ``coursekit.formats``, bit-identical to ``gguf.quants``) and
the norms in F32, under llama.cpp's tensor names. ``read_gguf(path)`` reads it back and decodes
every tensor with coursekit's own decoder; ``load_gguf_weights(model, path)`` puts the decoded
weights into a transformers model, so the round trip can be judged by perplexity.

Two details a converter must get right (they are what llama.cpp's convert_hf_to_gguf.py does):
the tied output layer is not written (llama.cpp reuses ``token_embd``), and the rows of the
query and key projections are reordered: Hugging Face's Llama rotates the two halves of each
head's vector, ggml rotates adjacent pairs, so each head's rows (0..63) go to the order
0, 32, 1, 33, ... ``read_gguf`` undoes it.

To run the file with llama.cpp (not needed in the course): build llama.cpp, then
``llama-cli -m tiny_lm-q4_0.gguf -p "In the beginning"`` or ``llama-perplexity -m ... -f text.txt``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from . import checks, formats

__all__ = ["GGUF_FORMATS", "export_gguf", "read_gguf", "load_gguf_weights", "GGUFTensor", "gguf_name",
           "file_weight_bytes"]

GGUF_FORMATS = ("f16", "q8_0", "q4_0", "mxfp4")

_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's name of a Hugging Face Llama parameter ('model.layers.0.mlp.up_proj.weight' ->
    'blk.0.ffn_up.weight'); None for the tied lm_head, which GGUF does not store."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"]:
        inner = ".".join(parts[3:-1])
        if inner in _LAYER_NAMES:
            return f"blk.{parts[2]}.{_LAYER_NAMES[inner]}.{parts[-1]}"
    checks.fail("hf_name", "a parameter name of a Llama model", repr(hf_name))


def _rope_rows(w: torch.Tensor, n_head: int, inverse: bool = False) -> torch.Tensor:
    half = w.shape[0] // n_head // 2
    if inverse:
        return w.reshape(n_head, half, 2, -1).transpose(1, 2).reshape(w.shape)
    return w.reshape(n_head, 2, half, -1).transpose(1, 2).reshape(w.shape)


def _ggml_type(fmt: str):
    from gguf import GGMLQuantizationType
    return GGMLQuantizationType[fmt.upper()]      # looked up by name: older gguf releases lack MXFP4


def _tensor_fmt(t: torch.Tensor, fmt: str) -> str:
    # Norm vectors stay float32, as llama.cpp keeps them; matrices take the chosen format.
    return fmt if t.dim() == 2 else "f32"


def _tokenizer_metadata(writer, tokenizer) -> None:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    special = {a["id"] for a in spec.get("added_tokens", [])}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")          # byte-level BPE, as GPT-2's
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])   # 3: control, 1: normal
    writer.add_token_merges(merges)
    for setter, token_id in (("add_bos_token_id", tokenizer.bos_token_id), ("add_eos_token_id", tokenizer.eos_token_id),
                             ("add_pad_token_id", tokenizer.pad_token_id)):
        if token_id is not None:
            getattr(writer, setter)(int(token_id))


def export_gguf(model, tokenizer, path, fmt: str = "q8_0") -> dict:
    """Write a Llama ``model`` (transformers) and its tokenizer to ``path`` as GGUF.

    fmt: 'f16', 'q8_0', 'q4_0' or 'mxfp4' for the matrices (norms stay F32). Returns
    ``{gguf tensor name: coursekit's predicted bytes}``, to compare with the file's own sizes.
    """
    checks.check_choice(fmt, "fmt", GGUF_FORMATS)
    import gguf
    cfg = model.config
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_name("coursekit tiny Llama")
    writer.add_file_type({"f16": 1, "q8_0": 7, "q4_0": 2, "mxfp4": 38}[fmt])
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    writer.add_vocab_size(cfg.vocab_size)
    _tokenizer_metadata(writer, tokenizer)

    predicted = {}
    tied = getattr(cfg, "tie_word_embeddings", False)
    for hf_name, p in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        name = gguf_name(hf_name)
        w = p.detach().float().cpu()
        if name.endswith("attn_q.weight"):
            w = _rope_rows(w, cfg.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            w = _rope_rows(w, cfg.num_key_value_heads)
        tfmt = _tensor_fmt(w, fmt)
        if tfmt == "f32":
            writer.add_tensor(name, w.numpy())
            predicted[name] = w.numel() * 4
        elif tfmt == "f16":
            writer.add_tensor(name, w.half().numpy())
            predicted[name] = w.numel() * 2
        else:
            raw = formats.encode(w, tfmt).to_gguf_bytes().reshape(w.shape[0], -1)
            writer.add_tensor(name, raw, raw_dtype=_ggml_type(tfmt))
            predicted[name] = formats.nbytes(tuple(w.shape), tfmt)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return predicted


@dataclass
class GGUFTensor:
    """One tensor read back: its name, ggml type name, (rows, cols) shape, bytes in the file, values."""

    name: str
    type: str
    shape: tuple
    n_bytes: int
    raw: np.ndarray
    values: torch.Tensor


def read_gguf(path) -> dict:
    """Read a GGUF file with ``gguf.GGUFReader`` and decode each tensor with coursekit.

    Returns ``{name: GGUFTensor}``; the query/key rows are put back in Hugging Face's order.
    """
    import gguf
    reader = gguf.GGUFReader(os.fspath(path))
    n_head = int(reader.fields["llama.attention.head_count"].parts[-1][0])
    n_head_kv = int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])
    out = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))      # ggml lists the fastest dim first
        kind = t.tensor_type.name.lower()
        if kind in ("f32", "f16"):
            values = torch.from_numpy(np.array(t.data, dtype=np.float32)).reshape(shape)
        else:
            values = formats.decode(formats.Encoded.from_gguf_bytes(np.array(t.data), shape, kind))
        if t.name.endswith("attn_q.weight"):
            values = _rope_rows(values, n_head, inverse=True)
        elif t.name.endswith("attn_k.weight"):
            values = _rope_rows(values, n_head_kv, inverse=True)
        out[t.name] = GGUFTensor(t.name, kind, shape, int(t.n_bytes), np.array(t.data), values)
    return out


def load_gguf_weights(model, path):
    """Copy the decoded tensors of a GGUF file into ``model`` (in place) and return it."""
    tensors = read_gguf(path)
    with torch.no_grad():
        for hf_name, p in model.state_dict().items():
            name = gguf_name(hf_name)
            if name == "output.weight" and name not in tensors:
                name = "token_embd.weight"
            p.copy_(tensors[name].values.reshape(p.shape).to(p.dtype))
    return model


def file_weight_bytes(tensors: dict) -> int:
    """Sum of the tensors' sizes in the file (without header and alignment padding)."""
    return sum(t.n_bytes for t in tensors.values())

