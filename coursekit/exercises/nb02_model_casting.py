"""Exercises of notebook 02 (model casting): measuring a cast model against its fp32 original.

Every exercise is a pure function of tensors, so the hidden cases are plain argument tuples.
Tolerances are absolute-tight (atol ~ 1e-9) because the differences being measured are themselves
small: a loose atol would let a wrong formula pass on them.
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded


def _logits_pairs(seed):
    """(fp32 logits, the same logits through a bf16 / fp16 round trip), plus harder pairs."""
    g = seeded(seed)
    logits = torch.randn(2, 6, 16, generator=g) * 3
    noisy = logits + 0.5 * torch.randn(2, 6, 16, generator=g)
    return logits, noisy


def _changed_cases():
    g = seeded(21)
    big = torch.randn(64, 64, generator=g) * 10        # large absolute change, ordinary relative one
    small = torch.randn(8, generator=g) * 1e-3
    tiny = torch.tensor([1.0, 1.0 + 2 ** -9])          # 1 + 2^-9 is halfway: bf16 rounds it away
    names = ["embedding", "norm", "pair"]
    before = [big, small, tiny]
    after_bf16 = [t.to(torch.bfloat16) for t in before]
    after_fp16 = [t.to(torch.float16) for t in before]
    noisy = [t + 0.01 * t.abs().mean() * torch.randn(t.shape, generator=g) for t in before]
    untouched = [t.clone() for t in before]
    untouched[1] = small * 1.5                            # only the small tensor changed, by 50 %
    return [
        (names, before, after_bf16),
        (names, before, after_fp16),
        (names, before, noisy),
        (names, before, untouched),
        (["a", "b"], [torch.ones(3), torch.full((2,), 4.0)],
         [torch.ones(3) * 1.1, torch.full((2,), 4.0) * 1.05]),     # 10 % beats 5 %, however large b is
        (["only"], [torch.randn(5, generator=g)], [torch.randn(5, generator=g)]),
    ]


@exercise(forbid=("coursekit.models.lm.perplexity",),
          title="the tensor a cast hurt most", cases=_changed_cases,
          hint=("compare each tensor's change with the size of the tensor itself: a big tensor that moved "
                "a lot in absolute terms may have been rounded no worse than a small one. The inputs may "
                "be bf16 or fp16, and the answer is a name, not an index.",
                "for each pair: the norm of (after - before) divided by the norm of before, both in "
                "float32; then return the name at the position of the largest of those numbers.",
                "errors = [((a.float() - b.float()).norm() / b.float().norm()).item() for b, a in "
                "zip(before, after)], then names[errors.index(max(errors))]."))
def most_changed(names, before, after):
    """The name of the tensor whose relative error ||after - before|| / ||before|| is largest."""
    errors = [((a.float() - b.float()).norm() / b.float().norm()).item() for b, a in zip(before, after)]
    return names[errors.index(max(errors))]


def _cosine_cases():
    g = seeded(2)
    a = torch.randn(6, 12, generator=g) * 4
    b = torch.randn(6, 12, generator=g)
    return [(a, b), (a, a.clone()), (a, 3 * a), (a, -a), (a, a + 0.1 * b),
            (a, a.to(torch.bfloat16)), (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]]))]


@exercise(title="mean cosine similarity of matching rows",
          forbid=("coursekit.models.agreement.agreement_of",), cases=_cosine_cases, atol=1e-6, rtol=1e-5,
          hint=("compare the rows in pairs: row i of a with row i of b gives one cosine, and the answer "
                "is the mean of those cosines, not one cosine of the two whole matrices. Work in float32 "
                "and return a Python float.",
                "a cosine is the dot product over the product of the norms; "
                "torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1) gives one per row. "
                "Then .mean().item()."))
def mean_cosine(a, b):
    """Mean, over rows, of the cosine similarity between row i of `a` and row i of `b` (float32)."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).mean().item()


def _ppl_cases():
    g = seeded(3)
    logits = torch.randn(20, 50, generator=g) * 2
    targets = torch.randint(0, 50, (20,), generator=g)
    confident = torch.full((4, 8), -20.0)
    confident[torch.arange(4), torch.tensor([1, 5, 2, 7])] = 20.0
    return [(logits, targets), (torch.zeros(5, 32), torch.tensor([0, 3, 31, 7, 7])),
            (confident, torch.tensor([1, 5, 2, 7])), (logits[:1], targets[:1]),
            (logits.to(torch.bfloat16), targets)]


@exercise(title="perplexity from logits", cases=_ppl_cases, atol=1e-9, rtol=1e-4,
          hint=("perplexity is the exponential of the average negative log-probability the model gives "
                "to the right next token. Logits are not probabilities yet, and bf16 logits should go to "
                "float32 first.",
                "torch.nn.functional.cross_entropy(logits.float(), targets) applies the softmax itself "
                "and returns that average; math.exp of its .item() is the perplexity."))
def perplexity_from_logits(logits, targets):
    """exp(mean cross-entropy) of next-token `targets` (n,) under `logits` (n, vocab), in float32."""
    return math.exp(torch.nn.functional.cross_entropy(logits.float(), targets).item())


def _top1_cases():
    logits, noisy = _logits_pairs(4)
    flat = logits.reshape(-1, 16)
    return [(logits, noisy), (logits, logits.clone()), (logits, -logits), (flat, noisy.reshape(-1, 16)),
            (torch.tensor([[0.1, 0.9, 0.0]]), torch.tensor([[0.2, 0.7, 0.1]]))]


@exercise(title="how often two models pick the same next token", cases=_top1_cases,
          atol=1e-9, rtol=1e-6,
          hint=("a model's pick at a position is the token with the largest logit. Count the positions "
                "where both picks are the same, as a share of all positions: a number between 0 and 1, "
                "as a Python float.",
                "argmax over the last dimension of each, compare with ==, turn the booleans into floats "
                "and take .mean().item()."))
def top1_agreement(logits_a, logits_b):
    """Fraction of positions where both logits pick the same top token (argmax over the last dim)."""
    return (logits_a.argmax(-1) == logits_b.argmax(-1)).float().mean().item()


# --------------------------------------------------------------------------- 02.which_route
@exercise(title="which route fits a 24 GB GPU?", choices=("a", "b", "c", "d"),
          hint=("think about the moment just before the cast in each route: what sits in GPU memory then, "
                "and how big is it? The file on disk never has to fit on the GPU.",
                "route a moves the fp32 model, 28 GB, onto the GPU before casting; route b converts while "
                "reading and only 14 GB of bf16 weights ever reach the GPU; mmap keeps pages of the file "
                "in CPU memory, never on the GPU."))
def which_route():
    """The letter of the true statement: loading in bf16 fits, casting after loading to the GPU does not."""
    return "b"
