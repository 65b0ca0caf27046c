"""Inference latency of the readable layers against fp32, bf16 and optimum-quanto, measured here.

coursekit's readable layers dequantize their weights on the fly and then run an ordinary float
matmul, so they save memory but add work. The fused kernels (coursekit.kernels) are timed in the
decode section (benchmarks/decode.py).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from coursekit import kernels, layers

from . import variants
from .timing import interleaved_median_ms


#: CPU features that decide whether low precision can be fast here: native bf16 and int8 dot products.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8")


def _cpu_features() -> list[str]:
    flags = kernels.cpu_flags() or set()
    return [f for f in CPU_FEATURES if f in flags]


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
    """Each workload's variants are timed in interleaved rounds (see timing.interleaved_median_ms)."""
    rows = []
    with torch.inference_mode():
        what = f"Linear {n}x{n}, batch 8"
        linear = _linear_variants(n)
        ms = interleaved_median_ms({name: (lambda m=m, x=x: m(x)) for name, (m, x) in linear.items()}, repeats)
        rows += [dict(what=what, variant=name, ms=t) for name, t in ms.items()]
        if lm is not None:
            ids = tokenizer(" ".join(["and the word was"] * 64), return_tensors="pt").input_ids[:, :256]
            calibrate = variants.lm_calibration(tokenizer)
            lms = {name: variants.make(lm, name, calibrate) for name in variants.builders(calibrate)
                   if "qint2" not in name and "W2A16" not in name}
            ms = interleaved_median_ms({name: (lambda m=m: m(ids)) for name, m in lms.items()}, repeats)
            rows += [dict(what=f"small LM forward, {ids.shape[1]} tokens", variant=name, ms=t)
                     for name, t in ms.items()]
    for row in rows:
        base = next(r["ms"] for r in rows if r["what"] == row["what"] and r["variant"] == "fp32")
        row["x_fp32"] = row["ms"] / base
    return dict(rows=rows, device="cpu", threads=torch.get_num_threads(), cpu_features=_cpu_features())


def to_markdown(r: dict) -> str:
    lines = [f"CPU, {r['threads']} torch threads, median of repeated runs.", "",
             "| workload | variant | ms | × fp32 time |", "|---|---|---:|---:|"]
    lines += [f"| {x['what']} | {x['variant']} | {x['ms']:.2f} | {x['x_fp32']:.2f} |" for x in r["rows"]]
    slower = [f"{x['variant']} ({x['x_fp32']:.1f}× on {x['what'].split(',')[0]})"
              for x in r["rows"] if x["variant"] != "fp32" and x["x_fp32"] > 1.05]
    features = r.get("cpu_features", [])
    bf16 = any(f in features for f in ("avx512_bf16", "amx_bf16"))
    int8 = any(f in features for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    lines += ["", "**Slower than fp32 here:** " + ("; ".join(slower) if slower else "none") + ".", "",
              "Why: the weight-only layers (W8A16, packed W4A16, quanto's qint8/qint4 weights) store small "
              "codes but compute in floating point. Every call first turns the codes back into a float "
              "weight (read the codes, unpack, subtract zero points, multiply by scales) and then runs the "
              "same float matmul as fp32: they save memory and add work. With int8 activations quanto "
              "does multiply integers (torch._int_mm), but every activation is quantized first and, "
              "without int8 dot-product instructions, the integer matmul is no faster. Speed comes from kernels that compute on the codes "
              "themselves (int8 matrix units) or fuse the unpacking into the matmul, and it pays most "
              "where reading the weights is the bottleneck (token-by-token generation of a large model "
              "on a GPU), which a 4.5M-parameter model on a CPU is not.",
              "", f"This CPU's relevant features: {', '.join(features) or 'unknown'}. "
              + ("It has native bf16 instructions. " if bf16 else
                 "It has no native bf16 arithmetic, so bf16 matmuls are emulated (hence bf16's slowness). ")
              + ("It has int8 dot-product instructions (VNNI/AMX)." if int8 else
                 "It has no int8 dot-product instructions (VNNI/AMX) either.")]
    return "\n".join(lines)
