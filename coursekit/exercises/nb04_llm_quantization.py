"""Exercises of notebook 04 · Quantizing a language model.

The questions an engineer answers around a post-training quantization run: how big will the model
be, will it fit on the GPU, how much worse did it get, and which precision should ship. All of them
are functions of numbers and tensors, so the grader can call them without loading any model.

Hidden cases are fixed numbers or tensors built by seeded functions. Cases that sit exactly on a
"fits" or "within budget" boundary use values that are exact in floating point (powers of two), so
the two ways a learner might write the comparison give the same verdict.
"""

from __future__ import annotations

import math

import torch

from .spec import exercise, seeded

from ..memory import WEIGHT_SHARE as GPU_HEADROOM   # fits_on_gpu: weights may use at most 80% of the GPU
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


@exercise(title="perplexity from per-token losses", cases=_losses_cases,
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


# --------------------------------------------------------------------------- 04.fits_on_gpu
def _fits_cases():
    return [
        (7_000_000_000, 16, 16),            # 14 GB of weights: no room left on a T4
        (7_000_000_000, 8, 16),             # 7 GB: fits
        (13_000_000_000, 8, 16),            # 13 GB < 16 GB, but over the 80% line
        (13_000_000_000, 4, 16),            # 6.5 GB: fits
        (70_000_000_000, 4, 16),            # 35 GB: no
        (70_000_000_000, 4, 80),            # 35 GB on an 80 GB card: fits
        (1_000_000_000, 32, 4),             # exactly 4 GB on a 4 GB card: no headroom left
        (135_000_000, 32, 16),
        (0, 16, 16),
    ]


@exercise(title="does it fit on the GPU?", cases=_fits_cases,
          hint=("compare the bytes the weights take with the share of the GPU they may use: 80%, since "
                "activations, the KV cache and the CUDA context need the rest. GB here are 10^9 bytes, "
                "and exactly on the line still fits.",
                "weights: n_params * bits / 8 bytes; allowed: 0.8 * gpu_gb * 1e9 bytes. Return whether "
                "the first is <= the second, as a bool."))
def fits_on_gpu(n_params, bits, gpu_gb):
    return n_params * bits / 8 <= GPU_HEADROOM * gpu_gb * 1e9


# --------------------------------------------------------------------------- 04.relative_increase
def _increase_cases():
    return [
        (20.0, 22.0),                       # +10%
        (12.5, 12.5),                       # unchanged
        (20.0, 19.0),                       # quantization can help a little by chance: negative
        (10.0, 1000.0),                     # broken: +9900%
        (7.513, 7.529),
        (4096.0, 4100.0),
    ]


@exercise(title="relative perplexity increase", cases=_increase_cases,
          hint=("relative to what? The change is measured in units of the baseline's perplexity: going "
                "from 20 to 22 is 0.1 (10% worse). It is negative when the quantized model happens to "
                "score better.",
                "(ppl_quant - ppl_base) / ppl_base."))
def relative_increase(ppl_base, ppl_quant):
    return (ppl_quant - ppl_base) / ppl_base


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
