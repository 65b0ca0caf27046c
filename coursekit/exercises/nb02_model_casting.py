"""Exercises of notebook 02 (model casting): measuring a cast model against its fp32 original.

Every exercise is a pure function of tensors, so the hidden cases are plain argument tuples.
Tolerances are absolute-tight (atol ~ 1e-9) because the differences being measured are themselves
small: a loose atol would let a wrong formula pass on them.
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded


def _bytes_cases():
    g = seeded(0)
    x = torch.randn(4, 8, generator=g)
    return [(x,), (x.to(torch.bfloat16),), (x.to(torch.float16),), (x.double(),),
            (torch.randint(-128, 128, (3, 5), generator=g, dtype=torch.int8),),
            (torch.arange(10),), (torch.zeros(6, dtype=torch.bool),), (torch.zeros(0, 5),),
            (torch.tensor(3.0),)]


@exercise(title="bytes of a tensor", cases=_bytes_cases, atol=0.0, rtol=0.0,
          hint=("a tensor's data is its number of elements times the size of one element, and that size "
                "depends on the dtype (float32: 4 bytes, bf16: 2, int8 and bool: 1, float64: 8). Don't "
                "assume 4.",
                "the tensor knows both: t.numel() counts the elements and t.element_size() gives the "
                "bytes of one element."))
def tensor_bytes(t):
    """Bytes of memory the elements of tensor `t` take (numel x bytes per element)."""
    return t.numel() * t.element_size()


def _logits_pairs(seed):
    """(fp32 logits, the same logits through a bf16 / fp16 round trip), plus harder pairs."""
    g = seeded(seed)
    logits = torch.randn(2, 6, 16, generator=g) * 3
    noisy = logits + 0.5 * torch.randn(2, 6, 16, generator=g)
    return logits, noisy


def _diff_cases():
    logits, noisy = _logits_pairs(1)
    return [(logits, logits.to(torch.bfloat16)), (logits, logits.to(torch.float16)),
            (logits, noisy), (noisy, logits), (logits, logits.clone()),
            (torch.tensor([1.0, -2.0, 3.0]), torch.tensor([2.0, -2.0, 0.0]))]


@exercise(title="mean absolute difference of two tensors", cases=_diff_cases, atol=1e-9, rtol=1e-5,
          hint=("subtract, keep each difference's size whatever its sign, average over every element. "
                "The inputs may be bf16 or fp16: do the arithmetic in float32. Return a Python float, "
                "not a tensor.",
                "convert both with .float() first, then (a - b).abs().mean(), and .item() at the end."))
def mean_abs_diff(a, b):
    """Mean absolute difference of two same-shape tensors, computed in float32, as a Python float."""
    return (a.float() - b.float()).abs().mean().item()


def _cosine_cases():
    g = seeded(2)
    a = torch.randn(6, 12, generator=g) * 4
    b = torch.randn(6, 12, generator=g)
    return [(a, b), (a, a.clone()), (a, 3 * a), (a, -a), (a, a + 0.1 * b),
            (a, a.to(torch.bfloat16)), (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]]))]


@exercise(title="mean cosine similarity of matching rows", cases=_cosine_cases, atol=1e-6, rtol=1e-5,
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
