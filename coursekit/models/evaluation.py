"""Perplexity a learner can trust: held-out slices, a separate calibration set, and a noise floor.

A quantized model is judged by how much its perplexity rises over its float self. On a few thousand
tokens that rise is measured with noise: another page of text of the same kind would give another
number. A lesson may call an effect real only when it is larger than that noise. This module gives
the three things it takes:

* **Held-out text, never used for anything else.** ``heldout_slices(tokenizer)``: 8 slices of 512
  tokens of modern English from the Python documentation (PSF licence,
  ``assets/corpus/pydoc_sentences.LICENSE.md``), sentences 2,024 to 3,999 of the shipped file
  (about 31,600 SmolLM2 tokens). No calibration, ranking or tuning may read them.
* **Calibration text, disjoint from it.** ``calibration_texts(n)``: sentences from the calibration
  pool (sentences 0 to 999, shared with the encoder's calibration in ``coursekit.models.agreement``);
  ``calibration_slices(tokenizer)``: the same pool cut like the held-out slices, to rank or
  choose things by perplexity without touching the held-out text. (Sentences 1,000 to 2,023 are
  the encoder's evaluation set and are used by neither.)
* **A noise floor.** ``perplexity_slices(model, tokenizer)`` scores each slice and the pool of
  them; ``compare(base, other)`` gives the effect of a change and its noise floor (see ``Effect``);
  ``reseeded(...)`` repeats the evaluation on other draws of held-out sentences.

``source="kjv"`` uses the King James Bible instead (held-out chapters for evaluation, training verses
for calibration): the course LM's own domain. For SmolLM2 it is another domain than the modern
calibration text (archaic English), though not unseen: the Bible is all over its pretraining data
(perplexity 15.5 against 49 on the modern slices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .agreement import N_CALIBRATION_POOL, N_EVAL, modern_sentences
from ..checks import check_choice, check_instance, check_int, fail
from .corpus import heldout_text, training_text
from .devices import model_device

__all__ = ["SOURCES", "N_SLICES", "SLICE_TOKENS", "HELDOUT_FIRST", "heldout_sentences",
           "calibration_texts", "heldout_slices", "calibration_slices", "SlicePerplexity",
           "perplexity_slices", "Effect", "compare", "reseeded"]

SOURCES = ("modern", "kjv")
#: The default evaluation: 8 slices of 512 tokens (4,096 tokens, 4,088 of them scored).
N_SLICES = 8
SLICE_TOKENS = 512
#: Index of the first held-out modern sentence: after the calibration pool and the encoder's set.
HELDOUT_FIRST = N_CALIBRATION_POOL + N_EVAL
#: Logits held at once by ``perplexity_slices``: batch x tokens x vocabulary <= this (256 MB in fp32).
_MAX_LOGITS = 1 << 26


# ---------------------------------------------------------------- the texts

@lru_cache(maxsize=len(SOURCES))
def _heldout_pool(source: str) -> tuple[str, ...]:
    if source == "modern":
        return modern_sentences()[HELDOUT_FIRST:]
    # one verse a line, chapters separated by blank lines: every 25th chapter, never trained on
    return tuple(v.strip() for v in heldout_text().splitlines() if v.strip())


@lru_cache(maxsize=len(SOURCES))
def _calibration_pool(source: str) -> tuple[str, ...]:
    if source == "modern":
        return modern_sentences()[:N_CALIBRATION_POOL]
    # training verses of sentence size; a few verses recur word for word in held-out chapters
    # ("And the LORD spake unto Moses, saying,"): those are held-out text, so never calibration
    held = set(_heldout_pool("kjv"))
    return tuple(v for v in (v.strip() for v in training_text().splitlines())
                 if 6 <= len(v.split()) <= 40 and v not in held)


def _check_source(source) -> str:
    return check_choice(source, "source", SOURCES)


def _order(n: int, seed) -> list[int]:
    if seed is None:
        return list(range(n))
    seed = check_int(seed, "seed", low=0)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def heldout_sentences(source: str = "modern") -> list[str]:
    """Every held-out sentence of ``source``, in the shipped order (for modern text: 1,976 sentences
    of the Python documentation, shuffled once at build time; for "kjv": the verses of the held-out
    chapters). Evaluation only: never calibrate, rank or tune on them."""
    return list(_heldout_pool(_check_source(source)))


def calibration_texts(n: int = 128, seed: int | None = None, source: str = "modern") -> list[str]:
    """``n`` calibration sentences, none of them in the held-out text.

    ``seed=None`` takes the first ``n`` of the pool (for modern text, the same sentences as
    ``coursekit.models.agreement.calibration_sentences(n)``); an int draws ``n`` at random, so that a
    method's dependence on its calibration set can itself be measured. ``source="kjv"``: King James
    verses from the course LM's training text, evenly spread over it (archaic English),
    leaving out the few verses that recur word for word in the held-out chapters.
    """
    source = _check_source(source)
    pool = _calibration_pool(source)
    n = check_int(n, "n", 1, len(pool))
    if seed is None and source == "kjv":   # evenly spread over the Bible, not its first chapters
        return [pool[i * (len(pool) // n)] for i in range(n)]
    return [pool[i] for i in _order(len(pool), seed)[:n]]


def _slices(pool, what: str, tokenizer, n_slices, tokens, seed) -> list[str]:
    n_slices = check_int(n_slices, "n_slices", low=2)
    tokens = check_int(tokens, "tokens", low=2)
    if not callable(tokenizer):
        fail("tokenizer", "a tokenizer (the one returned with the model)", type(tokenizer).__name__,
             TypeError)
    order = _order(len(pool), seed)
    # tokens of each sentence as it appears inside a slice, after a space
    lengths = [len(ids) for ids in tokenizer([" " + s for s in pool], add_special_tokens=False)["input_ids"]]
    slices, i = [], 0
    for _ in range(n_slices):
        chosen, count = [], 0
        while True:
            if count >= tokens:
                text = " ".join(chosen)
                if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= tokens:
                    break
            if i == len(order):
                fail("n_slices * tokens", f"at most the {sum(lengths):,} tokens of the {what} "
                     f"({len(pool):,} sentences)", f"{n_slices} x {tokens} = {n_slices * tokens:,}")
            chosen.append(pool[order[i]])
            count += lengths[order[i]]
            i += 1
        slices.append(text)
    return slices


def heldout_slices(tokenizer, n_slices: int = N_SLICES, tokens: int = SLICE_TOKENS,
                   seed: int | None = None, source: str = "modern") -> list[str]:
    """``n_slices`` disjoint texts of held-out sentences, each at least ``tokens`` tokens long.

    Each slice is whole sentences joined by spaces, just enough of them to reach ``tokens`` tokens
    of ``tokenizer`` (``perplexity_slices`` scores the first ``tokens``). ``seed=None`` takes the
    sentences in the shipped order; an int shuffles them first: the same evaluation on another
    draw of the same kind of text (``reseeded``). No two slices share a sentence, and none is a
    calibration sentence.
    """
    source = _check_source(source)
    return _slices(_heldout_pool(source), "held-out text", tokenizer, n_slices, tokens, seed)


def calibration_slices(tokenizer, n_slices: int = N_SLICES, tokens: int = SLICE_TOKENS,
                       seed: int | None = None, source: str = "modern") -> list[str]:
    """Like ``heldout_slices``, from the calibration pool: what to rank or choose by perplexity on,
    so that the held-out text still judges the choice fairly."""
    source = _check_source(source)
    return _slices(_calibration_pool(source), "calibration text", tokenizer, n_slices, tokens, seed)


# ---------------------------------------------------------------- perplexity per slice

@dataclass(frozen=True)
class SlicePerplexity:
    """Perplexity of one model on each slice, and on all of them pooled.

    slices: perplexity of each slice, exp(mean negative log-likelihood of its scored tokens).
    nll: the mean negative log-likelihood of each slice (nats per token): log of ``slices``.
    tokens: the number of scored tokens of each slice (its first token is only context).
    pooled: exp(mean NLL over every scored token of every slice). With equal slices (the default)
        this is exp of the mean of ``nll``, i.e. the geometric mean of ``slices``.
    """

    slices: tuple
    nll: tuple
    tokens: tuple
    pooled: float

    def __str__(self) -> str:
        return (f"perplexity {self.pooled:.2f} on {sum(self.tokens):,} tokens "
                f"({len(self.slices)} slices: {min(self.slices):.2f} to {max(self.slices):.2f})")


def _check_slices(slices) -> list[str]:
    if isinstance(slices, str) or not isinstance(slices, (list, tuple)) or not slices:
        fail("slices", "a non-empty list of str (e.g. heldout_slices(tokenizer))",
             type(slices).__name__, TypeError)
    if not all(isinstance(s, str) and s.strip() for s in slices):
        fail("slices", "a list of non-empty str", "an item that is not one", TypeError)
    return list(slices)


@torch.no_grad()
def perplexity_slices(model, tokenizer, slices=None, tokens: int | None = SLICE_TOKENS,
                      seed: int | None = None, source: str = "modern",
                      batch_size: int | None = None) -> SlicePerplexity:
    """Perplexity of ``model`` on each slice and pooled; see ``SlicePerplexity``.

    ``slices=None`` scores ``heldout_slices(tokenizer, N_SLICES, tokens, seed, source)``, the
    course's default evaluation (8 x 512 tokens of modern English; for SmolLM2 about 15 s of
    CPU time: 12-15 s on one core, about 8 s on two quiet ones). Given ``slices`` (a list of
    str), each is scored on its first ``tokens`` tokens (all of them with ``tokens=None``). Each slice is one window: its first token is only context,
    and no slice sees another. Works for any device or dtype, quantized models included; the
    log-probabilities are computed in float32. ``batch_size`` (default: as many slices as fit in
    256 MB of float32 logits) changes the speed, not the result beyond float rounding.
    """
    if slices is None:
        tokens = SLICE_TOKENS if tokens is None else tokens
        slices = heldout_slices(tokenizer, N_SLICES, tokens, seed, source)
    else:
        slices = _check_slices(slices)
        if seed is not None or source != "modern":
            fail("seed/source", "their defaults when slices are given", f"seed={seed!r}, source={source!r}")
    if tokens is not None:
        tokens = check_int(tokens, "tokens", low=2)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", low=1)
    ids = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in slices]
    ids = [x[:tokens] if tokens is not None else x for x in ids]
    for k, x in enumerate(ids):
        if len(x) < 2:
            fail(f"slices[{k}]", "at least 2 tokens", len(x))
    device = model_device(model)
    vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
    nll_sum, count = [0.0] * len(ids), [len(x) - 1 for x in ids]
    groups: dict[int, list[int]] = {}
    for k, x in enumerate(ids):                # equal lengths are batched together
        groups.setdefault(len(x), []).append(k)
    for length, members in groups.items():
        step = batch_size or max(1, _MAX_LOGITS // (length * vocab))
        for start in range(0, len(members), step):
            batch = members[start:start + step]
            x = torch.tensor([ids[k] for k in batch], device=device)
            logits = model(input_ids=x).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                    x[:, 1:].reshape(-1), reduction="none")
            for k, row in zip(batch, nll.view(len(batch), -1).sum(dim=1).tolist()):
                nll_sum[k] = row
    nll = tuple(s / c for s, c in zip(nll_sum, count))
    return SlicePerplexity(slices=tuple(math.exp(v) for v in nll), nll=nll, tokens=tuple(count),
                           pooled=math.exp(sum(nll_sum) / sum(count)))


def reseeded(model, tokenizer, seeds=(1, 2, 3, 4), tokens: int = SLICE_TOKENS,
             source: str = "modern") -> list[SlicePerplexity]:
    """The default evaluation repeated on other draws of held-out sentences, one per seed.

    How far ``pooled`` moves between seeds is how much a perplexity depends on which text was
    read: compare two models' *levels* only on the same slices. Paired with the same seeds for a
    second model, ``compare`` on each seed shows how far an *effect* moves between draws; it
    should stay within the noise floor that one draw's slices estimate.
    """
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple, range)) or len(seeds) == 0:
        fail("seeds", "a non-empty list of int", type(seeds).__name__, TypeError)
    return [perplexity_slices(model, tokenizer, tokens=tokens, seed=s, source=source) for s in seeds]


# ---------------------------------------------------------------- an effect and its noise floor

# Student's t, 97.5 % quantile, for 1..30 degrees of freedom (two-sided 95 %)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof


@dataclass(frozen=True)
class Effect:
    """What a change (quantization, a method, a setting) did to perplexity, and its noise floor.

    Both models read the very same slices, so how hard each slice is cancels; what is left is how
    much the effect itself varies from slice to slice. With d_i = log(other_i / base_i) on n
    slices (equal token counts), the effect is D = mean(d_i), its standard error
    se = std(d_i) / sqrt(n), and h = t(0.975, n - 1) * se the half-width of its 95 % confidence
    interval (Student's t: 2.365 for 8 slices).

    base, other: pooled perplexities of the two models on the same slices.
    delta: other - base (positive: the change made the model worse).
    relative: other / base - 1 = exp(D) - 1, the same effect as a fraction.
    noise: the noise floor, in perplexity: base * (exp(h) - 1), the smallest rise this evaluation
        tells from no change at all (a fall must pass base * (1 - exp(-h))). It is what the text
        alone can do: another draw of the same kind of text would likely move ``delta`` by about
        this much when there is no effect (``reseeded`` measures that directly).
    relative_noise: the same floor as a fraction, exp(h) - 1. ``relative_floor`` is the floor on
        the side of the effect (1 - exp(-h) for a fall), the one ``summary`` and ``str`` print.
    uncertainty: the ± of ``delta``: half the width of its 95 % interval
        [base * (exp(D - h) - 1), base * (exp(D + h) - 1)], i.e. other * sinh(h). Equal to the
        noise floor for small effects; larger for large ones (a doubled perplexity is measured with
        a doubled spread).
    relative_uncertainty: the ± of ``relative``: (other / base) * sinh(h).
    clear: |D| > h, i.e. the effect is above its noise floor (its interval excludes zero). A
        lesson claims an effect (a gain, a loss, a ranking) only when ``clear`` is True, and says
        so when it is not.
    slice_deltas: other_i - base_i on each slice.
    better_slices: on how many slices ``other`` scored lower (better) than ``base``.
    """

    base: float
    other: float
    delta: float
    relative: float
    noise: float
    relative_noise: float
    uncertainty: float
    relative_uncertainty: float
    clear: bool
    slice_deltas: tuple
    better_slices: int

    def summary(self, decimals: int = 0, verdict: bool = True) -> str:
        """The effect in percent, with its ± and noise floor, and the verdict, to ``decimals`` places:
        whole percents by default, the precision that survives another CPU (``str`` prints
        perplexities to 2 decimals; through a 2-bit model those moved by 0.1 % between kernel sets).
        ``verdict=False`` leaves the verdict out: for an effect that sits near its floor, where a
        nudge of the weights can carry it across and the printed words would change with it."""
        d = check_int(decimals, "decimals", 0, 4)
        check_instance(verdict, "verdict", bool, "True or False")
        text = (f"{self.relative:+.{d}%} ± {self.relative_uncertainty:.{d}%} "
                f"(noise floor {self.relative_floor:.{d}%})")
        if not verdict:
            return text
        return f"{text}: {'above the noise floor' if self.clear else 'no reliable difference'}"

    @property
    def relative_floor(self) -> float:
        """The noise floor on the side of the effect, as a fraction: a rise must pass exp(h) - 1
        (``relative_noise``), a fall 1 - exp(-h), which is smaller. What ``summary`` and ``str``
        print, so that an effect larger than the printed floor is always the one called clear."""
        if self.relative >= 0:
            return self.relative_noise
        return self.relative_noise / (1 + self.relative_noise)

    def __str__(self) -> str:
        verdict = "above" if self.clear else "within"
        return (f"{self.base:.2f} -> {self.other:.2f}: {self.delta:+.2f} ± {self.uncertainty:.2f} "
                f"({self.relative:+.1%} ± {self.relative_uncertainty:.1%}), {verdict} the noise floor "
                f"({self.base * self.relative_floor:.2f})")


def compare(base: SlicePerplexity, other: SlicePerplexity) -> Effect:
    """The effect of going from ``base`` to ``other`` (both from ``perplexity_slices`` on the same
    slices), with its noise floor; see ``Effect``. Print it: ``print(compare(fp32, int4))`` reads
    ``49.05 -> 60.97: +11.93 ± 2.92 (+24.3% ± 5.9%), above the noise floor (2.43)``."""
    check_instance(base, "base", SlicePerplexity, "a SlicePerplexity (from perplexity_slices)")
    check_instance(other, "other", SlicePerplexity, "a SlicePerplexity (from perplexity_slices)")
    if base.tokens != other.tokens:
        fail("other", f"scores on the same slices as base ({len(base.tokens)} slices of "
             f"{base.tokens[0]} scored tokens)", f"{len(other.tokens)} slices of {other.tokens[0]}")
    n = len(base.nll)
    if n < 2:
        fail("base", "scores on at least 2 slices (one slice has no spread)", n)
    d = torch.tensor(other.nll, dtype=torch.float64) - torch.tensor(base.nll, dtype=torch.float64)
    weights = torch.tensor(base.tokens, dtype=torch.float64)
    mean = float((d * weights).sum() / weights.sum())
    half = _t975(n - 1) * float(d.std()) / math.sqrt(n)
    return Effect(base=base.pooled, other=other.pooled, delta=other.pooled - base.pooled,
                  relative=other.pooled / base.pooled - 1, noise=base.pooled * math.expm1(half),
                  relative_noise=math.expm1(half), uncertainty=other.pooled * math.sinh(half),
                  relative_uncertainty=other.pooled / base.pooled * math.sinh(half), clear=abs(mean) > half,
                  slice_deltas=tuple(o - b for b, o in zip(base.slices, other.slices)),
                  better_slices=sum(o < b for b, o in zip(base.slices, other.slices)))
