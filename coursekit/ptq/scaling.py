"""Divide a layer's input by s and multiply its weight columns by s: the function does not change.

    y = x @ W.T = (x / s) @ (W * s).T          (s: one positive number per input channel)

SmoothQuant and AWQ both choose an s and apply this identity; they differ in why. The division of
x must happen somewhere. It costs nothing when the operation that *produced* x can absorb it:

* a norm (LayerNorm / RMSNorm) whose output feeds only these linears: divide its weight (and bias);
* a linear whose outputs reach this one channel by channel: divide its rows (and bias). Attention
  mixes tokens, never channels, so the value projection can absorb the division for the attention
  output projection; in a gated MLP, act(gate(x)) * up(x) is channel-wise in up, so up_proj can
  absorb the division for down_proj.

Where nothing can, the division stays as an ``InputScaled`` wrapper. That is the case for BERT's
LayerNorms (all-MiniLM-L6-v2 is post-LN: a LayerNorm's output is both the next layer's input *and*
the residual stream, so scaling it would change the model) and for the input of BERT's
``output.dense`` (a GELU sits in between). ``producer`` names which case applies.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from ..layers import replace_modules
from .act_layers import InputScaled
from .grid import check_weight_args

_LLAMA_NORM = {"q_proj": "input_layernorm", "k_proj": "input_layernorm", "v_proj": "input_layernorm",
               "gate_proj": "post_attention_layernorm", "up_proj": "post_attention_layernorm"}
_CHANNELWISE = {"self_attn.o_proj": "self_attn.v_proj", "mlp.down_proj": "mlp.up_proj",
                "attention.output.dense": "attention.self.value"}


def producer(model: nn.Module, group: list[str]):
    """The module that can absorb a division of the group's input, or None (see the module doc)."""
    first = group[0]
    parts = first.split(".")
    if parts[-1] in _LLAMA_NORM and len({_LLAMA_NORM.get(n.split(".")[-1]) for n in group}) == 1:
        name = ".".join(parts[:-2] + [_LLAMA_NORM[parts[-1]]])
        return _get(model, name)
    if len(group) == 1:
        for tail, source in _CHANNELWISE.items():
            if first.endswith(tail):
                prod = _get(model, first[: -len(tail)] + source)
                if isinstance(prod, nn.Linear) and prod.out_features == model.get_submodule(first).in_features:
                    return prod
    return None


def unabsorbed_channelwise(model: nn.Module, group: list[str]) -> bool:
    """True for a layer that has a channel-wise producer by name whose shape cannot take the
    division: o_proj under grouped-query attention, where v_proj has one output per key/value
    head, fewer than o_proj's inputs (llm-awq leaves such an o_proj unscaled)."""
    channelwise = len(group) == 1 and group[0].endswith(tuple(_CHANNELWISE))
    return channelwise and producer(model, group) is None


def _get(model, name):
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def divide_input(model: nn.Module, group: list[str], s: torch.Tensor) -> bool:
    """Make the group's layers see x / s: fold into the producer (True) or wrap each layer (False).

    The layers' weight columns must be multiplied by s separately (``scale_columns``).
    """
    prod = producer(model, group)
    if prod is None:
        replace_modules(model, group, lambda m: InputScaled(m, s))
        return False
    w = prod.weight
    if isinstance(prod, nn.Linear):
        w.div_(s.to(w.dtype)[:, None])           # rows: one per output channel of the producer
    else:
        w.div_(s.to(w.dtype))                    # a norm's per-channel gain
    if getattr(prod, "bias", None) is not None:
        prod.bias.div_(s.to(prod.bias.dtype))
    return True


def linear_of(model: nn.Module, name: str) -> nn.Linear:
    """The nn.Linear at ``name``, looking inside an InputScaled wrapper."""
    m = model.get_submodule(name)
    return m.inner if isinstance(m, InputScaled) else m


@torch.no_grad()
def scale_columns(model: nn.Module, group: list[str], s: torch.Tensor) -> None:
    """W[:, j] *= s_j for every layer of the group."""
    for name in group:
        w = linear_of(model, name).weight
        w.mul_(s.to(w.dtype))


def check_layers(model: nn.Module, names, bits, group_size):
    """Check the weight arguments, and that every named layer is a linear one, so that a method
    refuses a model before it changes any layer (never half-quantized); returns (bits, group_size)."""
    bits, group_size = check_weight_args(bits, group_size)
    for name in names:
        checks.check_instance(linear_of(model, name), f"model.{name}", nn.Linear, "an nn.Linear to quantize")
    return bits, group_size


def replace_linear_in(model: nn.Module, names, make) -> nn.Module:
    """Replace each named nn.Linear by make(linear), keeping an InputScaled wrapper around it."""
    def swap(m):
        if isinstance(m, InputScaled):
            m.inner = make(m.inner)
            return m
        return make(m)
    return replace_modules(model, names, swap)
