"""Round-to-nearest (RTN): every weight to its nearest grid point, independently. The baseline."""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from ..layers import linear_names
from .calibration import DEFAULT_EXCLUDE
from .grid import check_weight_args, packed_layer, quantize_weight
from .scaling import check_layers, replace_linear_in


def rtn_layer(linear: nn.Linear, bits: int = 4, group_size: int | None = None):
    """A PackedLinear holding ``linear``'s weight rounded to nearest on the asymmetric grid."""
    bits, group_size = check_weight_args(bits, group_size)
    q = quantize_weight(linear.weight.detach(), bits, group_size)
    return packed_layer(q.data, q.scale, q.zero_point, bits, group_size, linear.bias)


@torch.no_grad()
def rtn(model: nn.Module, bits: int = 4, group_size: int | None = None, exclude=DEFAULT_EXCLUDE) -> nn.Module:
    """Quantize every nn.Linear (but ``exclude``) with round-to-nearest, in place; returns model.

    ``group_size=None`` is one grid per output channel.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    names = linear_names(model, exclude)
    check_layers(model, names, bits, group_size)         # all of them before changing any
    return replace_linear_in(model, names, lambda m: rtn_layer(m, bits, group_size))
