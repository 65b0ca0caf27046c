"""Accuracy: the small LM's perplexity and the encoder's agreement at each precision, and the
weight error of coursekit's quantizers next to optimum-quanto's on the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from coursekit import layers, models, quant

from . import variants


def _lm_calibration(tokenizer, n_tokens: int = 1024):
    ids = tokenizer(models.training_text()[:20_000], return_tensors="pt").input_ids[:, :n_tokens]

    def calibrate(model):
        with torch.no_grad():
            for chunk in ids.split(256, dim=1):
                model(chunk)
    return calibrate


def perplexities(model, tokenizer, max_tokens: int | None = None) -> dict:
    out = {}
    kwargs = {} if max_tokens is None else dict(max_tokens=max_tokens)
    for name in variants.builders(_lm_calibration(tokenizer)):
        q = variants.make(model, name, _lm_calibration(tokenizer))
        out[name] = models.perplexity(q, tokenizer, **kwargs)
    for label, clipping in (("coursekit W4A16 (g64) + MSE clipping", "mse"),
                            ("coursekit W2A16 (g64) + MSE clipping", "mse")):
        cls = layers.W4A16Linear if "W4" in label else layers.W2A16Linear
        q = layers.replace_linear(variants.make(model, "fp32"), cls, exclude=("lm_head",), group_size=64,
                                  clipping=clipping)
        out[label] = models.perplexity(q, tokenizer, **kwargs)
    return out


def agreements(encoder, tokenizer) -> dict:
    out = {}
    for name in variants.builders():
        if "qint2" in name or "W2A16" in name:
            continue
        q = variants.make(encoder, name)
        out[name] = models.encoder_agreement(q, tokenizer).__dict__
    return out


def _quanto_dequantized(w, bits, group_size):
    from optimum.quanto import qint4, qint8
    from optimum.quanto.tensor.optimizers import AbsmaxOptimizer, MaxOptimizer
    from optimum.quanto.tensor.weights import quantize_weight
    if bits == 8:
        scale = AbsmaxOptimizer()(w, qint8, axis=0)
        return quantize_weight(w, qint8, axis=0, scale=scale).dequantize()
    scale, shift = MaxOptimizer()(w, qint4, axis=0, group_size=group_size)
    return quantize_weight(w, qint4, axis=0, scale=scale, shift=shift, group_size=group_size).dequantize()


def weight_errors(model: nn.Module, group_size: int = 128) -> dict:
    """Total squared error over all quantizable linear weights, per quantizer (lower is better)."""
    names = layers.linear_names(model)
    weights = [model.get_submodule(n).weight.detach() for n in names]
    weights4 = [w for w in weights if w.shape[1] % group_size == 0]
    sq = lambda a, b: float((a.double() - b.double()).pow(2).sum())
    total = lambda ws, f: sum(sq(w, f(w)) for w in ws) / sum(w.numel() for w in ws)
    g = dict(bits=4, granularity="per_group", group_size=group_size)
    r = {
        "int8 per-channel symmetric": {
            "coursekit": total(weights, lambda w: quant.quantize(w, 8, True, "per_channel").dequantize()),
            "optimum-quanto": total(weights, lambda w: _quanto_dequantized(w, 8, None))},
        f"int4 g{group_size} asymmetric": {
            "coursekit": total(weights4, lambda w: quant.quantize(w, **g).dequantize()),
            "coursekit + MSE clipping": total(weights4, lambda w: quant.quantize(w, clipping="mse", **g).dequantize()),
            "optimum-quanto": total(weights4, lambda w: _quanto_dequantized(w, 4, group_size))},
    }
    r["n_weights"] = {"int8": len(weights), "int4": len(weights4)}
    return r


def to_markdown(r: dict) -> str:
    lines = []
    if "perplexity" in r:
        lines += ["Small LM, held-out perplexity (lower is better):", "", "| variant | perplexity |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in r["perplexity"].items()]
    if "agreement" in r:
        lines += ["", "Encoder agreement with its fp32 self on the built-in sentence pairs:", "",
                  "| variant | " + " | ".join(next(iter(r["agreement"].values())).keys()) + " |",
                  "|---|" + "---:|" * len(next(iter(r["agreement"].values())))]
        for k, v in r["agreement"].items():
            lines.append(f"| {k} | " + " | ".join(f"{x:.4f}" if isinstance(x, float) else str(x)
                                                   for x in v.values()) + " |")
    if "weight_mse" in r:
        lines += ["", "Weight MSE over the small LM's linear layers (same weights for every quantizer):", "",
                  "| format | quantizer | MSE |", "|---|---|---:|"]
        for fmt, by in r["weight_mse"].items():
            if fmt == "n_weights":
                continue
            lines += [f"| {fmt} | {q} | {v:.3e} |" for q, v in by.items()]
    return "\n".join(lines)
