"""Did quantization change what the encoder says? Agreement with its fp32 self, on 1,024 sentences.

The 24 built-in pairs of `coursekit.models.encoder` are a quick yardstick; comparing methods that differ
by a few thousandths needs more sentences, and slices to tell a gain from noise. This module ships:

* ``modern_sentences()``: 4,000 plain English sentences from the Python documentation (PSF
  licence, see ``assets/corpus/pydoc_sentences.LICENSE.md``; built by
  ``scripts/build_modern_corpus.py``), split once and for all into a **calibration pool**
  (``calibration_sentences()``) and an **evaluation set** (``evaluation_sentences()``, 1,024
  sentences) that share no sentence.
* ``agreement(model, tokenizer, reference)``: how far the model's embeddings of the evaluation set
  moved from the reference (fp32) embeddings: mean cosine, the mean of the worst 5 % of sentences,
  the single worst one, and retrieval agreement (for
  each sentence, how many of its 10 nearest neighbours stay the same), overall and on 8 disjoint
  slices of 128 sentences (or on the first few slices only, to save time in a notebook).
* ``kjv_sentences()``: verses of the King James Bible, the out-of-domain calibration set.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..checks import check_instance, check_int, fail
from .corpus import CORPUS_DIR, training_text
from .encoder import embed

__all__ = ["MODERN_FILE", "N_EVAL", "N_SLICES", "modern_sentences", "calibration_sentences",
           "evaluation_sentences", "kjv_sentences", "reference_embeddings", "Agreement", "agreement",
           "agreement_of", "tail_mean"]

MODERN_FILE = CORPUS_DIR / "pydoc_sentences.txt.gz"
N_CALIBRATION_POOL = 1000        # sentences 0..999: calibration only
N_EVAL = 1024                    # sentences 1000..2023: evaluation only
N_SLICES = 8
TOP_K = 10
TAIL = 0.05                      # the worst 5 % of sentences: the tail a printed number can show


@lru_cache(maxsize=1)
def modern_sentences() -> tuple[str, ...]:
    """All shipped modern sentences (shuffled once, at build time, with a fixed seed)."""
    if not MODERN_FILE.exists():
        raise FileNotFoundError(f"{MODERN_FILE} is missing; rebuild it with "
                                "`python scripts/build_modern_corpus.py`")
    with gzip.open(MODERN_FILE, "rt", encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


def _take(pool: tuple, n, name: str) -> list[str]:
    n = len(pool) if n is None else check_int(n, name, 1, len(pool))
    return list(pool[:n])


def calibration_sentences(n: int | None = 128) -> list[str]:
    """The first ``n`` sentences of the calibration pool (1 to 1,000); never in the evaluation set."""
    return _take(modern_sentences()[:N_CALIBRATION_POOL], n, "n")


def evaluation_sentences() -> list[str]:
    """The 1,024 evaluation sentences, in 8 slices of 128 (slice i is items 128*i .. 128*i+127)."""
    return list(modern_sentences()[N_CALIBRATION_POOL:N_CALIBRATION_POOL + N_EVAL])


@lru_cache(maxsize=1)
def _kjv_verses() -> tuple[str, ...]:
    # one verse a line; keep the sentence-sized ones
    return tuple(v.strip() for v in training_text().splitlines() if 6 <= len(v.split()) <= 40)


def kjv_sentences(n: int = 128) -> list[str]:
    """``n`` King James verses, evenly spread over the training text: out-of-domain calibration."""
    verses = _kjv_verses()
    n = check_int(n, "n", 1, len(verses))
    step = len(verses) // n
    return [verses[i * step] for i in range(n)]


def reference_embeddings(model, tokenizer, slices: int = N_SLICES) -> torch.Tensor:
    """Embeddings of the first ``slices`` slices of the evaluation set (all 8: 1,024 sentences), in
    order: compute them once with the fp32 model, then pass them to ``agreement``."""
    slices = check_int(slices, "slices", 1, N_SLICES)
    n = slices * (N_EVAL // N_SLICES)
    order = _length_order(n)
    sentences = evaluation_sentences()
    emb = embed(model, tokenizer, [sentences[i] for i in order.tolist()], batch_size=128)
    return emb[torch.argsort(order)]


@lru_cache(maxsize=N_SLICES)
def _length_order(n: int) -> torch.Tensor:
    # batching sentences of similar length wastes less compute on padding
    lengths = torch.tensor([len(s) for s in evaluation_sentences()[:n]])
    return torch.argsort(lengths, stable=True)


@dataclass(frozen=True)
class Agreement:
    """Agreement of a model's embeddings with reference embeddings of the same sentences.

    mean_cosine: average cosine between the two embeddings of a sentence (1 = same direction).
    tail_cosine: the average over the worst 5 % of sentences (13 of 256). This is what ``str``
        prints for the worst sentences, not the single minimum. A minimum follows one sentence, and
        after an int8 rounding of activations one sentence can move by 0.004 between two CPUs'
        float kernels (measured: 0.898 against 0.902). The tail mean moves less, but W8A8 with a
        static per-tensor scale still moves it by up to 0.005 under ``make test-perturbed``
        (every code near a rounding boundary can flip a whole step), so it is printed with two
        decimals, the digits every CPU agrees on.
    worst_cosine: the smallest cosine, for reports that are not compared between machines.
    retrieval: for each sentence, the share of its 10 nearest neighbours (by cosine, among the
        other sentences) that the model and the reference agree on, averaged (1 = same search results).
    slices: the same three numbers on each of the 8 disjoint slices, as (mean, worst, retrieval)
        tuples (retrieval there is within the slice).
    """

    mean_cosine: float
    tail_cosine: float
    worst_cosine: float
    retrieval: float
    slices: tuple

    @property
    def slice_means(self) -> list[float]:
        return [s[0] for s in self.slices]

    def __str__(self) -> str:
        return (f"mean cosine {self.mean_cosine:.4f} | worst 5% {self.tail_cosine:.2f} | "
                f"top-{TOP_K} neighbours kept {self.retrieval:.1%}")


def _retrieval(emb: torch.Tensor, ref: torch.Tensor, k: int = TOP_K) -> float:
    """Mean overlap of the k nearest neighbours of every row (itself excluded)."""
    k = min(k, emb.shape[0] - 1)
    if k < 1:
        return 1.0
    def neighbours(e):
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.topk(k, dim=1).indices
    a, b = neighbours(emb), neighbours(ref)
    overlap = (a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2).float().mean()
    return float(overlap)


def agreement_of(emb: torch.Tensor, reference: torch.Tensor, n_slices: int = N_SLICES) -> Agreement:
    """``Agreement`` of two sets of unit embeddings of the same sentences (rows)."""
    check_instance(emb, "emb", torch.Tensor, "a tensor of embeddings")
    check_instance(reference, "reference", torch.Tensor, "a tensor of embeddings")
    if emb.shape != reference.shape or emb.ndim != 2:
        fail("reference", f"a 2-D tensor of the same shape as emb {tuple(emb.shape)}",
             f"shape {tuple(reference.shape)}")
    n_slices = check_int(n_slices, "n_slices", 1, emb.shape[0])
    cos = (emb * reference).sum(-1)
    slices = []
    for idx in torch.arange(emb.shape[0]).chunk(n_slices):
        slices.append((float(cos[idx].mean()), float(cos[idx].min()),
                       _retrieval(emb[idx], reference[idx])))
    return Agreement(float(cos.mean()), tail_mean(cos), float(cos.min()), _retrieval(emb, reference),
                     tuple(slices))


def tail_mean(values: torch.Tensor, fraction: float = TAIL) -> float:
    """Mean of the smallest ``fraction`` of ``values`` (at least one): the worst cases, averaged so
    that one value crossing a rounding boundary on another CPU barely moves it."""
    check_instance(values, "values", torch.Tensor, "a tensor of scores")
    k = max(1, round(fraction * values.numel()))
    return float(values.flatten().float().topk(k, largest=False).values.mean())


def agreement(model, tokenizer, reference: torch.Tensor) -> Agreement:
    """Embed the evaluation set with ``model`` and compare with ``reference_embeddings`` of fp32.

    The reference decides how many slices are scored: 1,024 rows for all 8, 512 for the first 4.
    """
    check_instance(reference, "reference", torch.Tensor, "the output of reference_embeddings")
    per_slice = N_EVAL // N_SLICES
    if reference.ndim != 2 or reference.shape[0] % per_slice or not 0 < reference.shape[0] <= N_EVAL:
        fail("reference", f"embeddings of the first k slices of {per_slice} evaluation sentences "
             "(the output of reference_embeddings)", f"shape {tuple(reference.shape)}")
    slices = reference.shape[0] // per_slice
    return agreement_of(reference_embeddings(model, tokenizer, slices), reference, slices)
