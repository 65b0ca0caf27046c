"""Inference latency: does quantization make it faster? On a CPU, mostly not — measured here.

coursekit's layers dequantize their weights on the fly and then run an ordinary float matmul, so
they save memory but add work. Speed-ups need integer or fused low-bit kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from coursekit import layers

from . import variants
from .timing import median_ms


def _linear_variants(n: int):
    from optimum.quanto import Calibration, freeze, qint8, quantize
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(n, n)).eval()
    x = torch.randn(8, n)
    out = {"fp32": (base, x), "bf16": (copy.deepcopy(base).to(torch.bfloat16), x.to(torch.bfloat16)),
           "coursekit W8A16": (layers.replace_linear(copy.deepcopy(base), layers.W8A16Linear), x),
           "coursekit W4A16 (packed, g64)": (layers.replace_linear(copy.deepcopy(base), layers.W4A16Linear,
                                                                  group_size=64), x)}
    q = copy.deepcopy(base)
    quantize(q, weights=qint8)
    freeze(q)
    out["optimum-quanto qint8 weights"] = (q, x)
    qa = copy.deepcopy(base)
    quantize(qa, weights=qint8, activations=qint8)
    with Calibration():
        qa(x)
    freeze(qa)
    out["optimum-quanto qint8 weights + activations"] = (qa, x)
    return out


def run(lm=None, tokenizer=None, n: int = 4096, repeats: int = 7) -> dict:
    rows = []
    with torch.inference_mode():
        for name, (module, x) in _linear_variants(n).items():
            rows.append(dict(what=f"Linear {n}x{n}, batch 8", variant=name,
                             ms=median_ms(lambda: module(x), repeats)))
        if lm is not None:
            ids = tokenizer(" ".join(["and the word was"] * 64), return_tensors="pt").input_ids[:, :256]
            for name in variants.builders():
                if "qint2" in name or "W2A16" in name:
                    continue
                m = variants.make(lm, name)
                rows.append(dict(what=f"small LM forward, {ids.shape[1]} tokens", variant=name,
                                 ms=median_ms(lambda: m(ids), repeats)))
    for row in rows:
        base = next(r["ms"] for r in rows if r["what"] == row["what"] and r["variant"] == "fp32")
        row["x_fp32"] = row["ms"] / base
    return dict(rows=rows, device="cpu", threads=torch.get_num_threads())


def to_markdown(r: dict) -> str:
    lines = [f"CPU, {r['threads']} torch threads, median of repeated runs.", "",
             "| workload | variant | ms | × fp32 time |", "|---|---|---:|---:|"]
    lines += [f"| {x['what']} | {x['variant']} | {x['ms']:.2f} | {x['x_fp32']:.2f} |" for x in r["rows"]]
    return "\n".join(lines)
