"""Quantization-aware training (QAT): fine-tune a model while it computes with quantized weights.

Post-training quantization (PTQ) rounds a trained model's weights once and hopes the model copes.
QAT lets training *see* the rounding. Every forward pass uses the weights snapped onto the grid
(``coursekit.layers.FakeQuantLinear``), so the loss is the loss of the quantized model; the
straight-through estimator carries the gradient back to the float weights, which drift to places
where rounding costs less. Afterwards the model is quantized for real, on the very grid it
trained on (``coursekit.layers.PackedLinear``).

    to_fake_quant(model, bits, granularity)     nn.Linear -> FakeQuantLinear (min/max scales)
    to_learned_scale(model, bits, granularity)  nn.Linear -> LearnedScaleLinear (LSQ-style scales)
    qat_finetune(model, tokenizer, ..., text=, perplexity=)
                                                a short, seeded AdamW loop that logs perplexity
    to_real_quant(model)                        either kind -> PackedLinear (packed codes)
    ptq(model, bits, granularity)               the baseline: to_fake_quant + to_real_quant, no training

Everything is seeded and the batches come in a fixed order, so a run gives the same numbers
every time on the same machine. The training text and the perplexity function are arguments, not
imports: QAT is a method on any model and any text, and ``coursekit.models`` (the course's LM, its
corpus) sits above it, not below. Notebook 09 passes ``models.training_text()`` and
``models.perplexity``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, layers, quant

__all__ = ["LearnedScaleLinear", "QATResult", "to_fake_quant", "to_learned_scale", "to_real_quant",
           "ptq", "training_ids", "batches", "qat_finetune", "ste_round"]

#: Defaults: 2-bit codes, one (scale, zero point) per group of 32 weights, every linear layer but
#: the output head (it shares its matrix with the input embedding).
BITS, GRANULARITY, GROUP_SIZE, EXCLUDE = 2, "per_group", 32, ("lm_head",)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (the straight-through estimator).

    ``x.round()`` has gradient zero almost everywhere; ``(x.round() - x).detach()`` is a constant
    for autograd, so the output equals ``x.round()`` while its gradient is the gradient of ``x``.
    """
    return x + (x.round() - x).detach()


# --------------------------------------------------------------------------- learned scales (LSQ)
def _n_groups(in_features: int, granularity: str, group_size: int | None) -> int:
    """How many scales each row of a weight has: one, or one per group.

    The blocks of one row under ``quant.Blocking``, which also checks the arguments; ``group_size``
    only counts for per-group grids (the defaults carry one for every granularity).
    """
    group_size = group_size if granularity == "per_group" else None
    return quant.Blocking.make((1, in_features), granularity, 0, group_size).n_blocks


class LearnedScaleLinear(nn.Linear):
    """An ``nn.Linear`` computing with its weight on a grid whose step size is *learned*.

    Like ``FakeQuantLinear`` (asymmetric; one scale per tensor, per output channel or per group
    of ``group_size`` inputs), but each scale is an ``nn.Parameter`` instead of being recomputed
    from min and max at every step: the idea of LSQ (Esser et al. 2019). It starts at the min/max
    value; the gradient can then trade clipping the largest weights against finer steps for all the
    others, which min/max never does. The zero points stay where min/max put them.

    With ``ste_round`` autograd gives the scale the LSQ gradient: ``round(w/s) - w/s`` from
    weights inside the range, the clipped code's distance to the zero point from the others.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = BITS,
                 granularity: str = GRANULARITY, group_size: int | None = GROUP_SIZE,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        checks.check_int(bits, "bits", quant.MIN_BITS, quant.MAX_BITS)
        n_groups = _n_groups(in_features, granularity, group_size)
        self.bits, self.granularity, self.n_groups = bits, granularity, n_groups
        rows = 1 if granularity == "per_tensor" else out_features
        self.scale = nn.Parameter(torch.ones(rows, n_groups, device=device, dtype=dtype))
        self.register_buffer("zero_point", torch.zeros(rows, n_groups, device=device, dtype=dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = BITS, granularity: str = GRANULARITY,
                    group_size: int | None = GROUP_SIZE):
        """Wrap an ``nn.Linear`` (sharing its weight and bias); the scales start at min/max."""
        checks.check_instance(linear, "linear", nn.Linear, "a torch.nn.Linear")
        w = linear.weight
        group_size = group_size if granularity == "per_group" else None
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, bits=bits,
                    granularity=granularity, group_size=group_size, device=w.device, dtype=w.dtype)
        layer.weight, layer.bias = linear.weight, linear.bias
        scale, zero_point = quant.choose_qparams(w.detach(), bits, symmetric=False,
                                                 granularity=granularity, group_size=group_size)
        with torch.no_grad():
            layer.scale.copy_(scale.reshape(layer.scale.shape))
            layer.zero_point.copy_(zero_point.reshape(layer.scale.shape).to(w.dtype))
        return layer

    def _scale(self) -> torch.Tensor:
        # a scale must stay positive: an optimizer step must not push it through zero
        return self.scale.clamp(min=1e-8).unsqueeze(-1)

    def codes(self, rounding=ste_round) -> torch.Tensor:
        """Codes shaped (out_features, n_groups, group_len), as floats so that gradients flow."""
        qmin, qmax = quant.qrange(self.bits)
        w = self.weight.view(self.out_features, self.n_groups, -1)
        return torch.clamp(rounding(w / self._scale()) + self.zero_point.unsqueeze(-1), qmin, qmax)

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the forward pass sees it: scale * (code - zero_point)."""
        w_q = (self.codes() - self.zero_point.unsqueeze(-1)) * self._scale()
        return w_q.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    @torch.no_grad()
    def to_packed(self) -> layers.PackedLinear:
        """The real quantized layer, with the learned scales (min/max would throw them away)."""
        codes = self.codes(torch.round).to(torch.int8).view(self.out_features, self.in_features)
        return layers.PackedLinear.from_codes(codes, self._scale().squeeze(-1), self.zero_point, self.bits,
                                              self.in_features // self.n_groups, self.bias, self.weight.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, {self.granularity}, learned scales"


# --------------------------------------------------------------------------- swapping layers
def to_fake_quant(model: nn.Module, bits: int = BITS, granularity: str = GRANULARITY,
                  group_size: int | None = GROUP_SIZE, exclude=EXCLUDE) -> nn.Module:
    """Make every linear layer (but ``exclude``) compute with fake-quantized weights, in place.

    Asymmetric, with min/max scales: the grid ``PackedLinear`` stores, so the model converts exactly.
    """
    group_size = group_size if granularity == "per_group" else None
    return layers.replace_linear(model, layers.FakeQuantLinear, exclude=exclude, bits=bits,
                                 symmetric=False, granularity=granularity, group_size=group_size)


def to_learned_scale(model: nn.Module, bits: int = BITS, granularity: str = GRANULARITY,
                     group_size: int | None = GROUP_SIZE, exclude=EXCLUDE) -> nn.Module:
    """Like ``to_fake_quant``, with trainable scales (``LearnedScaleLinear``)."""
    return layers.replace_linear(model, LearnedScaleLinear, exclude=exclude, bits=bits,
                                 granularity=granularity, group_size=group_size)


def to_real_quant(model: nn.Module) -> nn.Module:
    """Replace every fake-quantized layer by a ``PackedLinear`` holding its codes, in place.

    Each layer knows its own grid (``FakeQuantLinear.to_packed``, ``LearnedScaleLinear.to_packed``);
    ``layers.replace_modules`` walks the model.
    """
    names = [name for name, module in model.named_modules()
             if isinstance(module, (layers.FakeQuantLinear, LearnedScaleLinear))]
    return layers.replace_modules(model, names, lambda layer: layer.to_packed())


def ptq(model: nn.Module, bits: int = BITS, granularity: str = GRANULARITY,
        group_size: int | None = GROUP_SIZE, exclude=EXCLUDE) -> nn.Module:
    """Post-training quantization, in place: the same grid as QAT, minus the training."""
    return to_real_quant(to_fake_quant(model, bits, granularity, group_size, exclude))


# --------------------------------------------------------------------------- data
@lru_cache(maxsize=4)
def _encode(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def training_ids(tokenizer, text: str, every: int = 8) -> torch.Tensor:
    """Token ids of every ``every``-th chapter of ``text`` (e.g. ``models.training_text()``), as one tensor.

    A short fine-tune sees some 50k tokens, and tokenizing all 4 MB of the corpus takes seconds;
    a sample of chapters spread over every book is plenty, and ``every=1`` takes them all.
    Chapters are separated by a blank line; the result is cached per tokenizer and text.
    """
    checks.check_instance(text, "text", str, "a str (the training text, e.g. models.training_text())")
    if every > 1:
        text = "\n\n".join(text.split("\n\n")[::every])
    return _encode(tokenizer, text)


def batches(ids: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0):
    """Endless batches of random windows, in an order fixed by ``seed`` (its own generator)."""
    checks.check_int(batch_size, "batch_size", low=1)
    if checks.check_int(seq_len, "seq_len", low=1) >= len(ids):
        checks.fail("seq_len", f"fewer than the text's {len(ids)} tokens", seq_len)
    gen = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(ids) - seq_len, (batch_size,), generator=gen)
        yield torch.stack([ids[s:s + seq_len] for s in starts.tolist()])


# --------------------------------------------------------------------------- the training loop
@dataclass
class QATResult:
    """What ``qat_finetune`` returns: the model (still fake-quantized) and what happened."""

    model: nn.Module
    log: list = field(default_factory=list)      # (step, held-out perplexity of the fake-quantized model)
    losses: list = field(default_factory=list)   # training loss of every step
    seconds: float = 0.0

    @property
    def steps(self) -> list:
        return [s for s, _ in self.log]

    @property
    def perplexities(self) -> list:
        return [p for _, p in self.log]


def qat_finetune(model: nn.Module, tokenizer, steps: int = 60, lr: float = 1e-3, batch_size: int = 8,
                 seq_len: int = 128, seed: int = 0, eval_every: int = 10, scale_lr: float | None = None,
                 *, text: str, perplexity: Callable[..., float], every: int = 8,
                 eval_tokens: int | None = None) -> QATResult:
    """Fine-tune a fake-quantized model on ``text``; log held-out perplexity on the way.

    ``model`` is normally converted first (``to_fake_quant`` or ``to_learned_scale``; a plain
    model gives ordinary fine-tuning, the control experiment); every parameter trains. AdamW with
    a constant ``lr`` after a short warm-up, gradients clipped to norm 1: a brief fine-tune should
    nudge the weights onto better grid points, not retrain the model.
    Learned scales may get their own ``scale_lr`` (default ``lr``: with Adam a step moves a
    parameter by about ``lr`` whatever the size of its gradient, a percent or two of a 2-bit scale).
    Perplexity is measured every ``eval_every`` steps (and at the start and the end) as
    ``perplexity(model, tokenizer)`` (``coursekit.models.perplexity``: held-out text), with
    ``max_tokens=eval_tokens`` when given (None: that function's default), through the
    fake-quantized weights: what the real quantized model will score.
    """
    checks.check_int(steps, "steps", low=1)
    checks.check_int(eval_every, "eval_every", low=1)
    if not callable(perplexity):
        checks.fail("perplexity", "a function (model, tokenizer) -> float, e.g. models.perplexity",
                    type(perplexity).__name__, TypeError)
    eval_kwargs = {} if eval_tokens is None else {"max_tokens": eval_tokens}
    torch.manual_seed(seed)
    scales = [p for n, p in model.named_parameters() if n.endswith(".scale")]
    others = [p for n, p in model.named_parameters() if not n.endswith(".scale")]
    groups = [{"params": others, "lr": lr}]
    if scales:
        groups.append({"params": scales, "lr": lr if scale_lr is None else scale_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    base_lrs = [g["lr"] for g in opt.param_groups]
    warmup = max(1, steps // 10)
    data = batches(training_ids(tokenizer, text, every), batch_size, seq_len, seed)
    device = next(model.parameters()).device

    def evaluate():
        model.eval()
        return perplexity(model, tokenizer, **eval_kwargs)

    result = QATResult(model, [(0, evaluate())])
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * min(1.0, step / warmup)
        x = next(data).to(device)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        result.losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            result.log.append((step, evaluate()))
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result
