"""Memory: coursekit.memory.model_nbytes of each variant next to the size worked out by hand.

The theoretical size is computed from the fp32 model's shapes and the format's definition
(e.g. int8 weights: one byte per weight plus one fp32 scale per output row), independently of
the quantized model's tensors. model_nbytes must land within 1% of it; get_memory_footprint, which
ignores quantization, is shown beside it.
"""

from __future__ import annotations

import torch
from torch import nn

from coursekit import memory

from . import variants

FORMATS = {   # bytes per linear weight of shape (out, in), given the group size in use
    "coursekit W8A16": lambda o, i, g: o * i + o * 4,
    "coursekit W4A16 (packed, g64)": lambda o, i, g: o * i / 2 + (o * i // 64) * (4 + 1),
    "coursekit W2A16 (packed, g64)": lambda o, i, g: o * i / 4 + (o * i // 64) * (4 + 1),
    "optimum-quanto qint8": lambda o, i, g: o * i + o * 4 + 2 * 4,             # + input/output scale
    "optimum-quanto qint4": lambda o, i, g: o * i / 2 + (o * i // g) * (4 + 4) + 2 * 4,   # scale+shift
    "optimum-quanto qint2": lambda o, i, g: o * i / 4 + (o * i // g) * (4 + 4) + 2 * 4,
}


def _quanto_group_size(in_features: int) -> int:
    """optimum-quanto's rule for 2/4-bit weights: 128, stepping down by 32 to a divisor."""
    g = 128
    if in_features > g:
        while in_features % g and g > 32:
            g -= 32
        if in_features % g == 0:
            return g
    return in_features          # no grouping: one scale per row


def theoretical_nbytes(model: nn.Module, variant: str) -> float:
    linears = {m.weight: m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not name.endswith("lm_head")}
    tied = {id(p) for n, p in model.named_parameters() if n.endswith("embed_tokens.weight")}
    total, seen = 0.0, set()
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t in linears and id(t) not in tied and variant in FORMATS:
            o, i = t.shape
            total += FORMATS[variant](o, i, _quanto_group_size(i))
        elif variant == "bf16" and t.is_floating_point():
            total += t.numel() * 2
        else:
            total += t.numel() * t.element_size()
    return total


def run(models: dict) -> dict:
    """models: {label: fp32 model}. Returns a row per (model, variant)."""
    rows = []
    for label, model in models.items():
        for name in variants.builders():
            q = variants.make(model, name)
            measured, theory = memory.model_nbytes(q), theoretical_nbytes(model, name)
            rows.append(dict(model=label, variant=name, model_nbytes=measured, theoretical=theory,
                             rel_diff=measured / theory - 1,
                             get_memory_footprint=q.get_memory_footprint() if hasattr(q, "get_memory_footprint") else None))
            del q
    return dict(rows=rows)


def to_markdown(r: dict) -> str:
    lines = ["| model | variant | model_nbytes (MB) | theoretical (MB) | difference | get_memory_footprint (MB) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        fp = row["get_memory_footprint"]
        lines.append(f"| {row['model']} | {row['variant']} | {row['model_nbytes'] / 1e6:.3f} | "
                     f"{row['theoretical'] / 1e6:.3f} | {100 * row['rel_diff']:+.2f}% | "
                     f"{'' if fp is None else f'{fp / 1e6:.3f}'} |")
    return "\n".join(lines)
