"""Calibration: what every linear layer of a model sees, summed up as it goes by.

The methods of this package need three statistics of the inputs X (tokens x in_features) of each
linear layer on a few hundred representative texts, never the inputs themselves:

* the largest |x_j| of each input channel (SmoothQuant, LLM.int8(), static int8 activations);
* the mean |x_j| (AWQ's scales);
* the second moment H = X^T X / n (GPTQ's curvature, and AWQ's loss: a layer's squared output
  error on these inputs is tr(D H D^T) for a weight error D, so H replaces the tokens).

A pre-forward hook on every nn.Linear adds each batch into running sums, and the batch is then
freed: memory is one in x in matrix per layer, however many texts are used (the reference GPTQ
keeps a Hessian per layer for the same reason). Padding tokens are dropped, so a batch of short
sentences is not averaged with zeros.

Layers that receive the very same tensor (query/key/value after one norm, gate/up after one
RMSNorm) are recorded once and listed together in ``Calibration.groups``: scaling methods must
treat them as one, because whatever divides their shared input divides it for all of them.
The texts and settings are kept too (``Calibration.source``), so that a method can run them
again block by block (``sequential``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import checks
from ..models.devices import model_device
from ..layers import linear_names

#: Layers no method touches by default: the LM's output head, and BERT's pooler (unused by embed()).
DEFAULT_EXCLUDE = ("lm_head", "pooler")


@dataclass
class InputStats:
    """Running sums over one layer's input tokens: max |x_j|, sum |x_j|, X^T X (float32, CPU)."""

    absmax: torch.Tensor
    abs_sum: torch.Tensor
    xtx: torch.Tensor
    n_tokens: int = 0

    @classmethod
    def empty(cls, in_features: int) -> "InputStats":
        return cls(torch.zeros(in_features), torch.zeros(in_features), torch.zeros(in_features, in_features))

    def add(self, x: torch.Tensor) -> None:
        """Add a batch of tokens x (n, in_features)."""
        x = x.detach().float().cpu()
        self.absmax = torch.maximum(self.absmax, x.abs().amax(dim=0))
        self.abs_sum += x.abs().sum(dim=0)
        self.xtx.addmm_(x.T, x)
        self.n_tokens += x.shape[0]

    def mean_abs(self) -> torch.Tensor:
        return self.abs_sum / max(self.n_tokens, 1)

    def hessian(self) -> torch.Tensor:
        return self.xtx / max(self.n_tokens, 1)


@dataclass
class Source:
    """The texts a calibration ran, and how: enough to run them again."""

    tokenizer: object
    texts: list[str]
    max_length: int
    batch_size: int

    def batches(self, device):
        for i in range(0, len(self.texts), self.batch_size):
            yield self.tokenizer(self.texts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)


@dataclass
class Calibration:
    """The input statistics of each calibrated linear layer of a model.

    stats: layer name -> its InputStats (layers of one group share one object).
    groups: lists of layer names that read the same input, in model order.
    n_texts: how many texts produced them; source: those texts and settings (None if built by hand).
    """

    stats: dict[str, InputStats]
    groups: list[list[str]]
    n_texts: int
    source: Source | None = field(default=None, repr=False)

    @classmethod
    def from_inputs(cls, inputs: dict, groups=None, n_texts: int = 1) -> "Calibration":
        """A Calibration from inputs recorded some other way: layer name -> (n_tokens, in_features).
        ``groups`` defaults to one group per layer."""
        checks.check_instance(inputs, "inputs", dict, "a dict: layer name -> (n_tokens, in_features) tensor")
        stats = {}
        for name, x in inputs.items():
            checks.check_tensor(x, f"inputs[{name!r}]", floating=True, ndim=2)
            stats[name] = InputStats.empty(x.shape[1])
            stats[name].add(x)
        return cls(stats, [[n] for n in inputs] if groups is None else groups, n_texts)

    @property
    def names(self) -> list[str]:
        return list(self.stats)

    @property
    def n_tokens(self) -> int:
        return next(iter(self.stats.values())).n_tokens if self.stats else 0

    def _get(self, name: str) -> InputStats:
        if name not in self.stats:
            checks.fail("name", f"a calibrated layer ({len(self.stats)} of them, e.g. "
                        f"{next(iter(self.stats), None)!r})", repr(name))
        return self.stats[name]

    def absmax(self, name: str) -> torch.Tensor:
        """Largest |x| of each input channel: the range a static int8 grid must cover."""
        return self._get(name).absmax

    def mean_abs(self, name: str) -> torch.Tensor:
        """Mean |x| of each input channel: how much a weight column is used (AWQ)."""
        return self._get(name).mean_abs()

    def hessian(self, name: str) -> torch.Tensor:
        """H = X^T X / n (in x in): the curvature of the layer's squared output error (GPTQ, AWQ)."""
        return self._get(name).hessian()

    def shared_inputs(self) -> dict[str, str]:
        """Layer -> the first layer of its group, for every layer that shares another's input."""
        return {n: g[0] for g in self.groups for n in g[1:]}

    def __repr__(self) -> str:
        return (f"Calibration({self.n_texts} texts, {self.n_tokens} tokens, {len(self.stats)} layers "
                f"in {len(self.groups)} input groups)")


class Recorder:
    """Hooks that add every named layer's inputs into its InputStats while a model runs.

    ``shared`` maps a layer to the layer whose input it shares (recorded once). Without it the
    recorder records nothing and only finds out which layers share an input, by holding every
    input alive so that no later tensor can reuse its memory (and its address): that costs one
    batch's inputs of *every* layer, 0.75 GB for SmolLM2 at 32 texts, so ``calibrate`` finds out
    on one text and then records without holding.
    Call ``batch(attention_mask)`` before each forward pass: it says which tokens are padding.
    """

    def __init__(self, model: nn.Module, names, shared: dict | None = None):
        self.model, self.names = model, list(names)
        self.stats: dict[str, InputStats] = {}
        self.detect = shared is None
        self.shared: dict[str, str] = dict(shared or {})   # layer -> first layer with the same input
        self.mask, self.seen = None, {}

    def batch(self, attention_mask) -> None:
        self.mask = None if attention_mask is None else attention_mask.bool()
        self.seen = {}

    def _hook(self, name):
        def record(module, args):
            if name in self.shared:
                return
            x = args[0]
            if self.detect:
                first, _ = self.seen.setdefault((x.data_ptr(), tuple(x.shape), x.stride()), (name, x))
                if first != name:
                    self.shared[name] = first
                return
            if x.dim() == 3 and self.mask is not None and self.mask.shape == x.shape[:2]:
                x = x[self.mask]
            x = x.reshape(-1, x.shape[-1])
            self.stats.setdefault(name, InputStats.empty(x.shape[1])).add(x)
        return record

    def __enter__(self) -> "Recorder":
        self.handles = [self.model.get_submodule(n).register_forward_pre_hook(self._hook(n)) for n in self.names]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()

    def result(self):
        """(stats for every name, groups of names that shared an input, in model order)."""
        stats, groups, placed = {}, [], {}
        for n in self.names:
            root = self.shared.get(n, n)
            if root not in self.stats:           # never called in the forward pass: nothing to calibrate
                continue
            stats[n] = self.stats[root]
            if root in placed:
                groups[placed[root]].append(n)
            else:
                placed[root] = len(groups)
                groups.append([n])
        return stats, groups


def _body(model: nn.Module, names) -> nn.Module:
    """The model without its output head when no calibrated layer is the head: an LM's logits
    (batch x tokens x vocabulary: 0.4 GB for SmolLM2 at 32 x 60 tokens) are not needed."""
    base = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or base is model or head is None:
        return model
    return model if any(model.get_submodule(n) is head for n in names) else base


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        checks.fail("texts", "a non-empty list of str", type(texts).__name__, TypeError)
    if not all(isinstance(t, str) and t for t in texts):
        checks.fail("texts", "a list of non-empty str", "an item that is not one", TypeError)
    return list(texts)


@torch.no_grad()
def calibrate(model: nn.Module, tokenizer, texts, max_length: int = 128, batch_size: int = 32,
              exclude=DEFAULT_EXCLUDE) -> Calibration:
    """Run ``texts`` through ``model`` and sum up the inputs of every nn.Linear not in ``exclude``.

    Works for any Hugging Face model called as ``model(**tokenizer(texts))``: the encoder, the
    course LM, SmolLM2. Texts are truncated to ``max_length`` tokens. Returns a ``Calibration``.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    texts = _check_texts(texts)
    max_length = checks.check_int(max_length, "max_length", low=2)
    batch_size = checks.check_int(batch_size, "batch_size", low=1)
    names = linear_names(model, exclude)
    if not names:
        checks.fail("model", "a model with nn.Linear layers to calibrate (already quantized?)", type(model).__name__)
    source = Source(tokenizer, texts, max_length, batch_size)
    body, device = _body(model, names), model_device(model)
    with Recorder(model, names) as probe:                  # which layers share an input: one text
        batch = next(Source(tokenizer, texts[:1], max_length, 1).batches(device))
        probe.batch(batch["attention_mask"])
        body(**batch)
    with Recorder(model, names, probe.shared) as recorder:
        for batch in source.batches(device):
            recorder.batch(batch["attention_mask"])
            body(**batch)
    stats, groups = recorder.result()
    return Calibration(stats, groups, len(texts), source)
