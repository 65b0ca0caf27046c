"""One comparison of all the formats on the same weights: error against bits per weight.

``VARIANTS`` names each contender and how it turns a weight matrix into (values it computes with,
bytes it stores). ``weight_table({"encoder": enc, "LM": lm})`` runs every variant on every
``nn.Linear`` weight of the models' layers and reports, per model, the bits per weight (all
scales included, exact) and the relative error ``sum((w - w_q)^2) / sum(w^2)``: the share of
the weights' energy that quantization destroyed, comparable between models.
``fake_quantized(model, variant)`` is a copy of the model whose linear weights went through the
round trip, to measure what the error does to the model (perplexity, cosine).

The int4 rows are coursekit's own symmetric per-group quantizer (``coursekit.quant``) with its
float32 scales: the integer baseline of notebook 06.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import checks, quant
from . import encode, nbytes

__all__ = ["VARIANTS", "variant_roundtrip", "linear_weights", "weight_table", "format_weight_table", "block_grid",
           "fake_quantized", "WeightRow"]


def _int4(group_size):
    def run(w):
        q = quant.quantize(w, bits=4, symmetric=True, granularity="per_group", group_size=group_size)
        return q.dequantize(), q.nbytes
    return run


def _fmt(fmt, granularity=None):
    def run(w):
        from . import decode
        e = encode(w, fmt, granularity)
        return decode(e), nbytes(tuple(w.shape), fmt, granularity)
    return run


#: label -> function(weight) -> (dequantized weight, stored bytes). In order of the table.
VARIANTS = {
    "int4 g32": _int4(32), "int4 g128": _int4(128), "Q4_0": _fmt("q4_0"), "NF4": _fmt("nf4"),
    "FP4 (absmax g64)": _fmt("fp4_e2m1"), "MXFP4": _fmt("mxfp4"), "NVFP4": _fmt("nvfp4"),
    "FP8 E4M3 per-tensor": _fmt("fp8_e4m3"), "FP8 E4M3 per-row": _fmt("fp8_e4m3", "per_row"),
    "Q8_0": _fmt("q8_0"),
}


def variant_roundtrip(w: torch.Tensor, variant: str) -> torch.Tensor:
    """The values ``variant`` (a key of VARIANTS) stores for the weight ``w``, in w's dtype."""
    checks.check_choice(variant, "variant", VARIANTS)
    return VARIANTS[variant](w.detach().float())[0].to(w.dtype)


def linear_weights(model: nn.Module, skip=("lm_head", "pooler")) -> dict:
    """{name: weight} of the model's nn.Linear layers, without the output head and the pooler."""
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    return {n: m.weight for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and not any(s in n for s in skip)}


@dataclass
class WeightRow:
    variant: str
    bits: dict          # model label -> bits per weight, every scale included
    error: dict         # model label -> relative error sum((w - w_q)^2) / sum(w^2)
    models: dict = field(default_factory=dict)   # model label -> fake-quantized copy (if kept)


@torch.no_grad()
def weight_table(models: dict, variants=None, keep=()) -> list:
    """A WeightRow per variant: exact bits per weight and relative error on each model's linears.

    models: {label: an nn.Module (its linear_weights are used) or a dict {name: weight tensor}}.
    keep: variants whose fake-quantized copies of the nn.Module models are kept in ``row.models``
    (the same rounding the error was measured on, so the weights are rounded only once).
    """
    variants = list(VARIANTS) if variants is None else [checks.check_choice(v, "variants", VARIANTS)
                                                         for v in variants]
    keep = [checks.check_choice(v, "keep", VARIANTS) for v in keep]
    named = {label: (m if isinstance(m, dict) else linear_weights(m)) for label, m in models.items()}
    energy = {label: sum(float(w.detach().double().pow(2).sum()) for w in ws.values())
              for label, ws in named.items()}
    rows = []
    for v in variants:
        row = WeightRow(v, {}, {})
        for label, ws in named.items():
            target = None
            if v in keep and isinstance(models[label], nn.Module):
                row.models[label] = copy.deepcopy(models[label])
                target = linear_weights(row.models[label])
            stored = err = n = 0
            for name, w in ws.items():
                w = w.detach().float()
                wq, b = VARIANTS[v](w)
                stored += b
                err += float((w - wq).pow(2).sum())
                n += w.numel()
                if target is not None:
                    target[name].copy_(wq.to(target[name].dtype))
            row.bits[label], row.error[label] = 8 * stored / n, err / energy[label]
        rows.append(row)
    return rows


def format_weight_table(rows: list, digits: int = 3) -> str:
    """Plain-text table: one line per variant, bits per weight and relative error per model."""
    labels = list(rows[0].bits)
    head = ["format"] + [f"{lab} bits/w" for lab in labels] + [f"{lab} rel. error" for lab in labels]
    lines = [head] + [[r.variant] + [f"{r.bits[lab]:.3f}" for lab in labels]
                      + [f"{r.error[lab]:.{digits}g}" for lab in labels] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])
                     for line in lines)


@torch.no_grad()
def fake_quantized(model: nn.Module, variant: str) -> nn.Module:
    """A deep copy of ``model`` whose linear weights (not the head) went through ``variant``."""
    checks.check_choice(variant, "variant", VARIANTS)
    out = copy.deepcopy(model)
    for name, w in linear_weights(out).items():
        w.copy_(variant_roundtrip(w, variant))
    return out


def block_grid(fmt: str) -> torch.Tensor:
    """The 16 values a 4-bit format's block can hold when the block's largest magnitude is +1.

    fmt: 'int4' (coursekit's symmetric quantizer), 'nf4', 'fp4_e2m1', 'mxfp4', 'nvfp4' or 'q4_0'.
    Levels beyond +-1 exist in the format but this block never uses them (MXFP4's power-of-two
    scale, int4's -8): the drawing shows the waste.
    """
    from . import FORMATS, microscaling, ggml, nf4 as nf4_module
    checks.check_choice(fmt, "fmt", ("int4", "nf4", "fp4_e2m1", "mxfp4", "nvfp4", "q4_0"))
    size = 32 if fmt == "int4" else FORMATS[fmt].block
    block = torch.zeros(1, size)
    block[0, 0] = 1.0
    codes = torch.arange(16, dtype=torch.uint8).reshape(1, 16)
    if fmt == "int4":
        q = quant.quantize(block, bits=4, symmetric=True, granularity="per_group", group_size=size)
        return (q.scale.reshape(-1)[0] * torch.arange(-8, 8)).sort().values
    e = encode(block, fmt)
    if fmt == "nf4":
        values = nf4_module.decode_blocks(codes, e.scales)
    elif fmt == "fp4_e2m1":
        values = microscaling.decode_fp4(codes, e.scales)
    elif fmt == "mxfp4":
        values = microscaling.decode_mxfp4(codes, e.scales)
    elif fmt == "nvfp4":
        values = microscaling.decode_nvfp4(codes, e.scales[:1], e.tensor_scale)
    else:
        values = ggml.decode_q4_0(codes, e.scales)
    return values.reshape(-1).unique()
