"""A GGUF file's tokenizer metadata, as llama.cpp's converter writes it (``gguf_export`` uses it).

llama.cpp tokenizes with what the file says, not with the Hugging Face tokenizer: the vocabulary,
the merges, the special tokens, whether a BOS token is added, and the *pre-tokenizer* name, which
decides how text is split before BPE. A wrong name loads and silently changes the tokens
(``tokenizer_pre``). SmolLM2's tokenizer came from the GGUF file it ships in, so that file's
``tokenizer.*`` keys are copied as stored (``copied_fields``); any other tokenizer's are derived
(``derived_fields``).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from . import checks

__all__ = ["tokenizer_pre", "derived_fields", "copied_fields", "source_gguf"]


def tokenizer_pre(tokenizer) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (how text is split before BPE): ``'gpt-2'``
    for byte-level BPE with GPT-2's split rule, ``'smollm'`` when single digits are split off first.

    The name decides how llama.cpp splits text. A wrong one still loads and silently changes the
    tokens (``'default'`` split ``'s`` and `` (`` otherwise in the course LM: 11 of 4,096 held-out
    tokens, +2 % perplexity), so any other tokenizer is refused rather than guessed.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre, norm = spec.get("model", {}), spec.get("pre_tokenizer") or {}, spec.get("normalizer")

    def gpt2_bytelevel(p):
        return (p.get("type") == "ByteLevel" and p.get("use_regex", True)
                and not p.get("add_prefix_space", False))

    name = None
    if model.get("type") == "BPE" and norm is None:
        if gpt2_bytelevel(pre):
            name = "gpt-2"
        elif pre.get("type") == "Sequence":
            parts = pre.get("pretokenizers", [])
            if (len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits")
                    and gpt2_bytelevel(parts[1])):
                name = "smollm"
    if name is None:
        what = f"model {model.get('type')!r}, normalizer {(norm or {}).get('type')!r}, pre-tokenizer {json.dumps(pre)}"
        checks.fail("tokenizer", "a byte-level BPE tokenizer with GPT-2's split rule (pre-tokenizer "
                    "ByteLevel, or Digits(individual_digits) then ByteLevel), whose llama.cpp name is known",
                    what)
    return name


def _adds(tokenizer, token_id) -> bool | None:
    """Whether the tokenizer adds ``token_id`` around a text when asked for special tokens."""
    if token_id is None:
        return None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return token_id in ids and token_id not in tokenizer("a", add_special_tokens=False)["input_ids"]


def derived_fields(tokenizer) -> list:
    """(key, value, type, sub-type) of the tokenizer's metadata, derived from it as llama.cpp's
    convert_hf_to_gguf.py does for a GPT-2-style BPE tokenizer."""
    from gguf import GGUFValueType as V
    pre = tokenizer_pre(tokenizer)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        if i < len(tokens):
            tokens[i] = token
    if any(t is None for t in tokens):
        checks.fail("tokenizer", "a vocabulary numbered 0 to n-1", "gaps in its ids")
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    # 1: normal, 3: control (special), 4: user-defined (added, not special)
    types = [(3 if added[i].get("special") else 4) if i in added else 1 for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    fields = [("tokenizer.ggml.model", "gpt2", V.STRING, None),       # byte-level BPE, as GPT-2's
              ("tokenizer.ggml.pre", pre, V.STRING, None),
              ("tokenizer.ggml.tokens", tokens, V.ARRAY, V.STRING),
              ("tokenizer.ggml.token_type", types, V.ARRAY, V.INT32),
              ("tokenizer.ggml.merges", merges, V.ARRAY, V.STRING)]
    for key, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                          ("unknown", tokenizer.unk_token_id), ("padding", tokenizer.pad_token_id)):
        if token_id is not None:
            fields.append((f"tokenizer.ggml.{key}_token_id", int(token_id), V.UINT32, None))
    for key, token_id in (("add_bos_token", tokenizer.bos_token_id), ("add_eos_token", tokenizer.eos_token_id)):
        adds = _adds(tokenizer, token_id)
        if adds is not None:
            fields.append((f"tokenizer.ggml.{key}", adds, V.BOOL, None))
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        fields.append(("tokenizer.chat_template", tokenizer.chat_template, V.STRING, None))
    return fields


def copied_fields(tokenizer, source) -> list:
    """Every ``tokenizer.*`` key of the GGUF file ``source``, as stored, after checking that its
    vocabulary is the tokenizer's."""
    path = os.path.realpath(os.fspath(source))
    stat = os.stat(path)
    fields = _read_tokenizer_fields(path, stat.st_size, stat.st_mtime_ns)
    tokens = next((v for k, v, _, _ in fields if k == "tokenizer.ggml.tokens"), None)
    vocab = tokenizer.get_vocab()
    if tokens is None or len(tokens) != len(vocab) or any(vocab.get(t) != i for i, t in enumerate(tokens)):
        checks.fail("tokenizer_gguf", "a GGUF file with the tokenizer's own vocabulary",
                    f"{os.fspath(source)}, whose tokens differ")
    return fields


@lru_cache(maxsize=2)
def _read_tokenizer_fields(path: str, size: int, mtime_ns: int) -> list:
    # gguf's reader parses 100,000 strings in Python (seconds for SmolLM2): once per file version
    import gguf
    reader = gguf.GGUFReader(path)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            fields.append((key, field.contents(), field.types[0], sub))
    return fields


def source_gguf(tokenizer):
    """The GGUF file a tokenizer was converted from, whose metadata to copy; None if there is none."""
    # SmolLM2's tokenizer was converted from the GGUF file it ships in: that file's metadata is the
    # original (pre-tokenizer 'smollm', chat template, unknown token) and is copied as it is.
    from .models import smollm2
    try:
        if os.path.realpath(tokenizer.name_or_path) == os.path.realpath(smollm2.cache_dir()):
            return smollm2.gguf_path()
    except (smollm2.ModelNotInstalledError, OSError, TypeError):
        pass
    return None
