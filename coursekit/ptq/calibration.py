"""Calibration: record what every linear layer of a model actually sees.

All four methods of this package need the same thing, the inputs X (tokens x in_features) of each
linear layer on a few hundred representative texts: SmoothQuant and LLM.int8() read each input
channel's largest magnitude, AWQ each channel's mean magnitude and the layer's output on them, GPTQ
the second moment H = X^T X / n. One forward pass with a pre-forward hook on every nn.Linear
collects them; padding tokens are dropped, so a batch of short sentences is not averaged with zeros.

Layers that receive the very same tensor (query/key/value after one LayerNorm, gate/up after one
RMSNorm) are recorded once and listed together in ``Calibration.groups``: scaling methods must
treat them as one, because whatever divides their shared input divides it for all of them.
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
class Calibration:
    """Inputs of each calibrated linear layer of a model, as float32 (n_tokens, in_features) on CPU.

    inputs: layer name -> its inputs (layers of one group share one tensor).
    groups: lists of layer names that read the same input, in model order.
    n_texts: how many texts produced them.
    """

    inputs: dict[str, torch.Tensor]
    groups: list[list[str]]
    n_texts: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.inputs)

    def absmax(self, name: str) -> torch.Tensor:
        """Largest |x| of each input channel: the range a static int8 grid must cover."""
        return self._cached(("absmax", name), lambda x: x.abs().amax(dim=0))(name)

    def hessian(self, name: str) -> torch.Tensor:
        """H = X^T X / n (in x in): the curvature of the layer's squared output error, for GPTQ."""
        return self._cached(("hessian", name), lambda x: x.T @ x / x.shape[0])(name)

    def _cached(self, key, compute):
        def get(name):
            if name not in self.inputs:
                checks.fail("name", f"a calibrated layer ({len(self.inputs)} of them, e.g. "
                            f"{next(iter(self.inputs), None)!r})", repr(name))
            if key not in self._cache:
                self._cache[key] = compute(self.inputs[name])
            return self._cache[key]
        return get

    def __repr__(self) -> str:
        tokens = next(iter(self.inputs.values())).shape[0] if self.inputs else 0
        return (f"Calibration({self.n_texts} texts, {tokens} tokens, {len(self.inputs)} layers "
                f"in {len(self.groups)} input groups)")


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        checks.fail("texts", "a non-empty list of str", type(texts).__name__, TypeError)
    if not all(isinstance(t, str) and t for t in texts):
        checks.fail("texts", "a list of non-empty str", "an item that is not one", TypeError)
    return list(texts)


@torch.no_grad()
def calibrate(model: nn.Module, tokenizer, texts, max_length: int = 128, batch_size: int = 32,
              exclude=DEFAULT_EXCLUDE) -> Calibration:
    """Run ``texts`` through ``model`` and keep the inputs of every nn.Linear not in ``exclude``.

    Works for any Hugging Face model called as ``model(**tokenizer(texts))``: the encoder, the
    course LM. Texts are truncated to ``max_length`` tokens. Returns a ``Calibration``.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    texts = _check_texts(texts)
    max_length = checks.check_int(max_length, "max_length", low=2)
    batch_size = checks.check_int(batch_size, "batch_size", low=1)
    names = linear_names(model, exclude)
    if not names:
        checks.fail("model", "a model with nn.Linear layers to calibrate (already quantized?)", type(model).__name__)
    chunks: dict[str, list] = {n: [] for n in names}
    shared: dict[str, str] = {}          # layer -> first layer that received the same tensor
    state = {"mask": None, "seen": {}}

    def hook(name):
        def record(module, args):
            x = args[0]
            # the entry holds x alive, so no later tensor of this batch can reuse its memory
            key = (x.data_ptr(), tuple(x.shape), x.stride())
            first, _ = state["seen"].setdefault(key, (name, x))
            if first != name:
                shared.setdefault(name, first)
                return
            mask = state["mask"]
            if x.dim() == 3 and mask is not None and mask.shape == x.shape[:2]:
                x = x[mask]
            chunks[name].append(x.reshape(-1, x.shape[-1]).float().cpu())
        return record

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    device = model_device(model)
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            state["mask"], state["seen"] = batch["attention_mask"].bool(), {}
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    inputs = {}
    for n in names:
        inputs[n] = inputs[shared[n]] if n in shared else torch.cat(chunks[n])
    groups, placed = [], {}
    for n in names:
        root = shared.get(n, n)
        if root in placed:
            groups[placed[root]].append(n)
        else:
            placed[root] = len(groups)
            groups.append([n])
    return Calibration(inputs, groups, len(texts))
