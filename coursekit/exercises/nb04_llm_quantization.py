"""Exercises of notebook 04 · Quantizing a language model.

The questions an engineer answers around a post-training quantization run: how big will the model
be, which group size a memory budget allows, which layers to keep in high precision, and which
precision should ship. All of them
are functions of numbers and tensors, so the grader can call them without loading any model.

Hidden cases are fixed numbers or tensors built by seeded functions. Cases that sit exactly on a
"fits" or "within budget" boundary use values that are exact in floating point (powers of two), so
the two ways a learner might write the comparison give the same verdict.
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded

BYTES_PER_GROUP = 4           # bytes_for_model: a 16-bit scale and a 16-bit zero point per group


# --------------------------------------------------------------------------- 04.perplexity_from_losses
def _losses_cases():
    g = seeded(40)
    return [
        (torch.rand(64, generator=g) * 4 + 1,),                  # per-token losses of a decent model
        (torch.rand(4, 255, generator=g) * 6,),                  # a batch of windows: mean over all
        (torch.full((10,), math.log(4096.0)),),                  # uniform guessing over 4096 tokens
        (torch.zeros(5),),                                       # a perfect model: perplexity 1
        (torch.tensor([2.5]),),                                  # a single token
        (torch.tensor([0.1, 9.0, 0.2, 0.3]),),                   # one bad token dominates
    ]


@exercise(forbid=("coursekit.models.lm.perplexity",),
          title="perplexity from per-token losses", cases=_losses_cases,
          hint=("a per-token loss is already -log p. Perplexity undoes the log once, after averaging: "
                "average first, exponentiate second. The average runs over every element, whatever the "
                "tensor's shape.",
                "math.exp(losses.mean().item()); it is not the mean of exp(loss). Return a Python float."))
def perplexity_from_losses(losses):
    return math.exp(losses.double().mean().item())


# --------------------------------------------------------------------------- 04.bytes_for_model
def _bytes_cases():
    return [
        (7_000_000_000, 16, None),          # a 7B model in bf16: 14 GB
        (7_000_000_000, 4, None),           # int4 codes only
        (7_000_000_000, 4, 128),            # int4 with groups of 128: +1/4 bit per weight
        (134_217_728, 4, 32),               # small groups cost a whole bit per weight
        (4096, 2, 64),
        (1_000_000, 8, 1_000_000),          # one group: practically per-tensor
        (0, 8, None),                       # nothing to store
    ]


@exercise(title="bytes of a quantized model", cases=_bytes_cases,
          hint=("two parts: the codes, whose size depends on the bits per weight, and, only when there "
                "are groups, a fixed cost per group (a 16-bit scale and a 16-bit zero point). "
                "group_size=None means no groups at all.",
                "the codes take n_params * bits / 8 bytes; there are n_params / group_size groups of 4 "
                "bytes each. Return the sum as a float."))
def bytes_for_model(n_params, bits, group_size):
    nbytes = n_params * bits / 8
    if group_size is not None:
        nbytes += n_params / group_size * BYTES_PER_GROUP
    return float(nbytes)


# --------------------------------------------------------------------------- 04.choose_group_size
def _group_cases():
    sizes = [32, 64, 128, 256, 1024]
    return [
        (7_000_000_000, 4, 4.0, sizes),          # 3.5 GB of codes; g32 adds 0.875 GB: too much, g64 fits
        (7_000_000_000, 4, 5.0, sizes),          # room for the finest groups
        (7_000_000_000, 4, 4.0, [1024, 128, 64, 32]),  # largest first: still the smallest that fits, 64
        (7_000_000_000, 4, 3.6, sizes),          # only g1024 (3.527 GB) fits
        (7_000_000_000, 4, 3.4, sizes),          # codes alone are 3.5 GB: nothing fits
        (70_000_000_000, 3, 30.0, sizes),        # 26.25 GB of codes, g128 adds 2.19 GB
        (1_000_000, 2, 0.0003, [256, 16, 64]),   # candidates not in order: the smallest that fits
        (1_000_000, 8, 0.00104, [128, 32, 64]),  # 1.0 MB + 4 bytes per group: g128 (1.03125 MB)
        (4096, 4, 1.0, [64]),                    # a single candidate that fits easily
    ]


@exercise(title="the finest groups a memory budget allows", cases=_group_cases, atol=0.0, rtol=0.0,
          hint=("smaller groups cost more bytes (one more scale and zero point per group) and usually give "
                "a smaller error, so you want the smallest group size that still fits. The candidates are not "
                "always in order, and sometimes even the largest group does not fit.",
                "for each candidate g, from the smallest up: the model takes n_params * bits / 8 bytes of codes "
                "plus n_params / g groups of 4 bytes (your bytes_for_model); return the first g whose total "
                "is at most budget_gb * 1e9 bytes, else None."))
def choose_group_size(n_params, bits, budget_gb, candidates):
    """The smallest group size among `candidates` whose model fits in `budget_gb` GB, or None."""
    for group_size in sorted(candidates):
        if bytes_for_model(n_params, bits, group_size) <= budget_gb * 1e9:
            return group_size
    return None


# --------------------------------------------------------------------------- 04.keep_in_high_precision
def _keep_cases():
    names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    g = seeded(45)
    noisy = (50.0 * (1 + 0.01 * torch.rand(7, generator=g))).tolist()
    return [
        (names, [50.2, 50.1, 51.0, 50.05, 50.3, 50.0, 52.5], 50.0, 0.005),  # down, v, gate: worst first
        (names, [50.2, 50.1, 51.0, 50.05, 50.3, 50.0, 52.5], 50.0, 0.1),    # nothing is that bad
        (names, [50.2, 50.1, 51.0, 50.05, 50.3, 50.0, 52.5], 50.0, 0.0),    # any increase: all but up
        (names, [49.9, 49.8, 49.7, 49.9, 49.6, 49.95, 49.99], 50.0, 0.0),   # quantizing helped everywhere
        (["a", "b", "c"], [8.5, 8.25, 8.375], 8.0, 0.03125),               # b sits exactly on the limit
        (names, noisy, 50.0, 0.005),
        (["only"], [80.0], 40.0, 0.5),
    ]


@exercise(title="which layers to keep in high precision", cases=_keep_cases, atol=0.0, rtol=0.0,
          hint=("a layer deserves to stay in high precision when quantizing it alone raised the perplexity by "
                "more than the allowed fraction, measured relative to the baseline. Exactly at the limit is "
                "not above it, and the order of the answer matters: the most sensitive layer first.",
                "keep the names whose (ppl - ppl_base) / ppl_base is > max_increase, then sort them by that "
                "increase, largest first (sorted(..., key=..., reverse=True)); return a list of names."))
def keep_in_high_precision(names, ppls, ppl_base, max_increase):
    """Names of the layers whose quantization alone costs more than `max_increase`, worst first."""
    increase = {name: (ppl - ppl_base) / ppl_base for name, ppl in zip(names, ppls)}
    sensitive = [name for name in names if increase[name] > max_increase]
    return sorted(sensitive, key=lambda name: increase[name], reverse=True)


# --------------------------------------------------------------------------- 04.pick_precision
def _pick_cases():
    g = seeded(44)
    ppls = torch.tensor([10.0, 10.05, 10.8, 25.0])
    sizes = torch.tensor([16_000_000, 8_000_000, 4_000_000, 2_000_000])
    noisy = 12.0 + torch.rand(6, generator=g)
    return [
        (ppls, sizes, 0.01),                                                 # int8 is within 1%
        (ppls, sizes, 0.1),                                                  # int4 is within 10%
        (ppls, sizes, 2.0),                                                  # anything goes
        (ppls, sizes, 0.0),                                                  # no loss allowed: baseline
        (torch.tensor([12.0, 30.0, 12.2, 12.1]), torch.tensor([8.4, 2.6, 3.1, 7.4]), 0.05),  # unsorted
        (torch.tensor([5.0, 5.1, 5.05]), torch.tensor([4.0, 2.0, 2.0]), 0.05),  # same size: lower ppl
        (torch.tensor([8.0, 10.0, 10.5]), torch.tensor([4.0, 2.0, 1.0]), 0.25),  # exactly on the budget
        (torch.tensor([7.0]), torch.tensor([4.0]), 0.0),                     # only the baseline
        (noisy, torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]), 0.03),
    ]


@exercise(title="pick the precision to ship", cases=_pick_cases, points=2,
          hint=("two steps: first decide which variants are allowed (their perplexity stays within the "
                "budget that the baseline ppls[0] and max_increase set; exactly on it counts as within), "
                "then among those pick the smallest. The baseline is always allowed, so there is always "
                "an answer.",
                "the budget is ppls[0] * (1 + max_increase). Go through every index, skip those above "
                "the budget, keep the one with the smallest size and, on equal sizes, the lower "
                "perplexity. The variants are not sorted.",
                "comparing tuples (sizes[i].item(), ppls[i].item()) handles the tie in one comparison; "
                "return the index as a Python int."))
def pick_precision(ppls, sizes, max_increase):
    budget = ppls[0].item() * (1 + max_increase)
    best = 0
    for i in range(len(ppls)):
        if ppls[i].item() > budget:
            continue
        key = (sizes[i].item(), ppls[i].item())
        if key < (sizes[best].item(), ppls[best].item()):
            best = i
    return best
