"""The course LM as a real GGUF file, written and read with the ``gguf`` package (llama.cpp's own).

GGUF is the single-file format of llama.cpp and the tools built on it (Ollama, LM Studio): a
header of key-value metadata (architecture, sizes, tokenizer), then every tensor, aligned, in its
ggml type. ``export_gguf(model, tokenizer, path, fmt)`` writes the tiny Llama with its matrices in
F16, Q8_0, Q4_0, Q4_1 or MXFP4 (computed by ``coursekit.formats``, bit-identical to ``gguf.quants``) and
the norms in F32, under llama.cpp's tensor names. ``read_gguf(path)`` reads it back and decodes
every tensor with coursekit's own decoder; ``load_gguf_weights(model, path)`` puts the decoded
weights into a transformers model, so the round trip can be judged by perplexity.

Two details a converter must get right (they are what llama.cpp's convert_hf_to_gguf.py does):
the tied output layer is not written (llama.cpp reuses ``token_embd``), and the rows of the
query and key projections are reordered: Hugging Face's Llama rotates the two halves of each
head's vector, ggml rotates adjacent pairs, so each head's rows (0..63) go to the order
0, 32, 1, 33, ... ``read_gguf`` undoes it.

A file may mix types tensor by tensor (``fmt={'token_embd.weight': 'q8_0', '*': 'q4_0'}``, see
``tensor_types``), and ``predicted_bytes`` gives every tensor's size to the byte before anything is
quantized. Blocks quantized elsewhere (GPTQ's: ``ptq.gptq_gguf``) go in as they are with ``encoded=``:
re-encoding their values would not give the same blocks back. The tokenizer's metadata is what
llama.cpp's converter writes: its pre-tokenizer name (``tokenizer_pre``: a wrong one silently changes
the tokens), whether a BOS token is added, and ``general.quantization_version``; SmolLM2's is copied
from the GGUF file it ships in.

To run the file with llama.cpp: ``make llama-cpp``, then ``coursekit.llamacpp.perplexity(path, text)``
or ``coursekit.llamacpp.generate(path, prompt)``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from . import checks, formats, gguf_tokenizer
from .gguf_tokenizer import tokenizer_pre

__all__ = ["GGUF_FORMATS", "TENSOR_TYPES", "export_gguf", "tensor_types", "tensor_shapes", "predicted_bytes",
           "as_exported", "tokenizer_pre", "read_gguf", "load_gguf_weights", "GGUFTensor", "gguf_name", "file_weight_bytes"]

#: Types of a whole-model export (``fmt="q4_0"``).
GGUF_FORMATS = ("f16", "q8_0", "q4_0", "q4_1", "mxfp4")
#: Types one tensor may take in a per-tensor mix (``fmt={...}``): the above, and F32.
TENSOR_TYPES = GGUF_FORMATS + ("f32",)

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


# ---------------------------------------------------------------- which type each tensor gets

def tensor_shapes(model) -> dict:
    """{gguf name: (rows, cols) of a matrix or (n,) of a norm vector} of what the export writes, in order."""
    tied = getattr(model.config, "tie_word_embeddings", False)
    return {gguf_name(n): tuple(p.shape) for n, p in model.state_dict().items()
            if not (n == "lm_head.weight" and tied)}


def _describe_fmt() -> str:
    return ("a type name (" + ", ".join(repr(t) for t in GGUF_FORMATS) + ") or a {tensor name or pattern: type} "
            "dict, e.g. {'token_embd.weight': 'q8_0', 'blk.29.*': 'f16', '*': 'q4_0'}")


def tensor_types(model, fmt) -> dict:
    """``{gguf tensor name: type}`` that ``export_gguf(model, ..., fmt)`` writes: the plan, before any
    weight is quantized (``predicted_bytes`` gives its size).

    ``fmt`` is one type for every matrix (``'q4_0'``), or a dict from GGUF tensor names or shell-style
    patterns (``'blk.29.*'``, ``'blk.*.ffn_down.weight'``, ``'*'``) to types, one of TENSOR_TYPES. For
    each matrix the *first* entry that matches it decides, so put ``'*'`` last. Checked so that a
    mistake cannot pass silently: every matrix needs an entry, and every entry must decide at least
    one matrix (a typo, or an entry shadowed by an earlier one, is an error). Norm vectors stay F32
    whatever the patterns say, as llama.cpp keeps them; a dict may name one only with 'f32'.
    """
    import fnmatch
    shapes = tensor_shapes(model)
    matrices = [n for n, s in shapes.items() if len(s) == 2]
    if isinstance(fmt, str):
        checks.check_choice(fmt, "fmt", GGUF_FORMATS)
        rules = {"*": fmt}
    elif isinstance(fmt, Mapping):
        if not fmt:
            checks.fail("fmt", _describe_fmt(), "an empty dict")
        rules = {}
        for key, kind in fmt.items():
            if not isinstance(key, str) or not key.strip():
                checks.fail("fmt", "tensor names or patterns (non-empty str) as keys", repr(key), TypeError)
            checks.check_choice(kind, f"fmt[{key!r}]", TENSOR_TYPES)
            if key in shapes and len(shapes[key]) == 1 and kind != "f32":
                checks.fail(f"fmt[{key!r}]", "'f32': norm vectors stay F32 in llama.cpp's files", repr(kind))
            rules[key] = kind
    else:
        checks.fail("fmt", _describe_fmt(), type(fmt).__name__, TypeError)
    types, decided = {}, {key: 0 for key in rules}
    for name in matrices:
        key = next((k for k in rules if fnmatch.fnmatchcase(name, k)), None)
        if key is None:
            checks.fail("fmt", "a type for every matrix (add a '*' entry last for the rest)",
                        f"none for {name!r}")
        types[name] = rules[key]
        decided[key] += 1
    for key, count in decided.items():
        if count == 0 and not (key in shapes and len(shapes[key]) == 1):
            matched = [n for n in matrices if fnmatch.fnmatchcase(n, key)]
            if matched:
                first = next(k for k in rules if fnmatch.fnmatchcase(matched[0], k))
                why = f"every matrix it matches is decided by the earlier entry {first!r} (first match wins)"
            else:
                why = f"it matches no matrix of this model (names look like {matrices[0]!r}, {matrices[-1]!r})"
            checks.fail(f"fmt[{key!r}]", "an entry that decides at least one matrix", why)
    for name, kind in types.items():
        cols = shapes[name][1]
        block = formats.spec(kind).block if kind not in ("f32", "f16") else 1
        if cols % block:
            checks.fail(f"fmt (for {name!r})", f"a type whose block ({block}) divides the row length",
                        f"{kind!r} for rows of {cols}")
    return {name: types.get(name, "f32") for name in shapes}


def predicted_bytes(model, fmt) -> dict:
    """``{gguf tensor name: bytes}`` of the tensors ``export_gguf(model, ..., fmt)`` writes, exact to the
    byte, computed from the shapes alone (nothing is quantized)."""
    shapes = tensor_shapes(model)
    return {name: _nbytes(shapes[name], kind) for name, kind in tensor_types(model, fmt).items()}


@contextlib.contextmanager
def as_exported(model, fmt, encoded=None):
    """Inside the ``with``, every matrix of ``model`` holds the values ``export_gguf(model, ..., fmt,
    encoded=encoded)`` would store (decoded to the model's dtype); afterwards the original weights are
    back, also after an exception.

    Why: scoring a policy this way is scoring its file without writing and reading 100 MB, with the
    same values: ``load_gguf_weights`` of the file gives them bit for bit (a block lies within a row,
    so the query/key row order of ``_rope_rows`` changes nothing).
    """
    types = tensor_types(model, fmt)
    encoded = _check_encoded(encoded, types, tensor_shapes(model))
    tied = getattr(model.config, "tie_word_embeddings", False)
    saved = {}
    try:
        with torch.no_grad():
            for hf_name, p in model.state_dict(keep_vars=True).items():
                name = gguf_name(hf_name)
                if (hf_name == "lm_head.weight" and tied) or types[name] == "f32":
                    continue
                w = p.detach().float().cpu()
                if name in encoded:
                    values = formats.decode(encoded[name])
                else:
                    values = w.half().float() if types[name] == "f16" else formats.roundtrip(w, types[name])
                saved[hf_name] = p.detach().clone()
                p.copy_(values.to(device=p.device, dtype=p.dtype))
        yield model
    finally:
        with torch.no_grad():
            params = model.state_dict(keep_vars=True)
            for hf_name, original in saved.items():
                params[hf_name].copy_(original)


def _check_encoded(encoded, types: dict, shapes: dict) -> dict:
    """``encoded``: None, or ``{GGUF tensor name: formats.Encoded}`` of matrices, each in the policy's
    type and the tensor's shape (what ``ptq.gguf_gptq.gptq_gguf`` returns)."""
    if encoded is None:
        return {}
    if not isinstance(encoded, Mapping):
        checks.fail("encoded", "None or a dict {GGUF tensor name: formats.Encoded}", type(encoded).__name__,
                    TypeError)
    for name, enc in encoded.items():
        if name not in types or len(shapes[name]) != 2:
            checks.fail("encoded", "GGUF names of the model's matrices as keys (e.g. 'blk.0.ffn_up.weight')",
                        repr(name))
        checks.check_instance(enc, f"encoded[{name!r}]", formats.Encoded, "a formats.Encoded")
        if enc.fmt != types[name] or tuple(enc.shape) != tuple(shapes[name]):
            checks.fail(f"encoded[{name!r}]", f"type {types[name]!r} (the policy's) and shape {tuple(shapes[name])}",
                        f"type {enc.fmt!r}, shape {tuple(enc.shape)}")
    return dict(encoded)


def _nbytes(shape, kind: str) -> int:
    if kind in ("f32", "f16"):
        return math.prod(shape) * {"f32": 4, "f16": 2}[kind]
    return formats.nbytes(tuple(shape), kind)


def _file_type(types: dict, shapes: dict) -> int:
    # llama.cpp's "mostly X": the type that holds the most matrix weights
    counts = {}
    for name, kind in types.items():
        if len(shapes[name]) == 2:
            counts[kind] = counts.get(kind, 0) + shapes[name][0] * shapes[name][1]
    main = max(counts, key=counts.get)
    return {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "mxfp4": 38}[main]


def export_gguf(model, tokenizer, path, fmt="q8_0", tokenizer_gguf="auto", name=None, encoded=None) -> dict:
    """Write a Llama ``model`` (transformers) and its tokenizer to ``path`` as GGUF.

    fmt: one type for every matrix, 'f16', 'q8_0', 'q4_0', 'q4_1' or 'mxfp4', or a per-tensor mix:
    ``{'token_embd.weight': 'q8_0', 'blk.29.*': 'f16', '*': 'q4_0'}`` (see ``tensor_types``). Norm
    vectors stay F32. Returns ``{gguf tensor name: coursekit's predicted bytes}`` (``predicted_bytes``),
    to compare with the file's own sizes.

    The tokenizer's metadata is derived from ``tokenizer`` as llama.cpp's converter does
    (``tokenizer_pre`` names its split rule; an unknown tokenizer is refused). ``tokenizer_gguf``: a
    GGUF file whose ``tokenizer.*`` metadata is copied instead (its vocabulary must be the
    tokenizer's); ``'auto'`` (default) copies it from SmolLM2's own file for SmolLM2's tokenizer, and
    ``None`` always derives. ``name``: the file's ``general.name`` (default: the model's folder name).
    ``encoded``: ``{GGUF tensor name: formats.Encoded}`` written as they are instead of quantizing those
    weights (GPTQ's blocks: ``ptq.gguf_gptq.gptq_gguf``), each in the policy's type.
    """
    import gguf
    types = tensor_types(model, fmt)
    shapes = tensor_shapes(model)
    encoded = _check_encoded(encoded, types, shapes)
    if tokenizer_gguf == "auto":
        tokenizer_gguf = gguf_tokenizer.source_gguf(tokenizer)
    elif tokenizer_gguf is not None and not os.path.isfile(os.fspath(tokenizer_gguf)):
        checks.fail("tokenizer_gguf", "'auto', None or the path of a GGUF file", repr(tokenizer_gguf))
    fields = (gguf_tokenizer.copied_fields(tokenizer, tokenizer_gguf) if tokenizer_gguf is not None
              else gguf_tokenizer.derived_fields(tokenizer))
    cfg = model.config
    if name is None:
        name = os.path.basename(os.path.normpath(getattr(cfg, "_name_or_path", "") or "")) or "coursekit model"
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_name(str(name))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(_file_type(types, shapes))
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    writer.add_vocab_size(cfg.vocab_size)
    for key, value, vtype, sub in fields:
        writer.add_key_value(key, value, vtype, sub)

    predicted = {}
    tied = getattr(cfg, "tie_word_embeddings", False)
    for hf_name, p in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        tname = gguf_name(hf_name)
        w = p.detach().float().cpu()
        kind = types[tname]
        if kind in ("f32", "f16"):
            data, raw_dtype = w.numpy().astype("float16" if kind == "f16" else "float32"), None
        else:
            enc = encoded[tname] if tname in encoded else formats.encode(w, kind)
            data, raw_dtype = enc.to_gguf_bytes().reshape(w.shape[0], -1), _ggml_type(kind)
        if tname.endswith("attn_q.weight"):      # blocks lie within rows: reordering rows moves whole blocks
            data = _rope_rows(torch.from_numpy(data), cfg.num_attention_heads).numpy()
        elif tname.endswith("attn_k.weight"):
            data = _rope_rows(torch.from_numpy(data), cfg.num_key_value_heads).numpy()  # grouped-query: fewer heads
        writer.add_tensor(tname, data, raw_dtype=raw_dtype)
        predicted[tname] = _nbytes(tuple(w.shape), kind)
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
    ``path`` may also be a ``gguf.GGUFReader`` already open on the file (it reads the whole header).
    """
    import gguf
    reader = path if isinstance(path, gguf.GGUFReader) else gguf.GGUFReader(os.fspath(path))
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
    """Copy the decoded tensors of a GGUF file into ``model`` (in place) and return it.

    ``path`` may also be what ``read_gguf`` returned, ``{name: GGUFTensor}``, to load without
    decoding the file again."""
    tensors = path if isinstance(path, dict) else read_gguf(path)
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

