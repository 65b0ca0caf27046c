"""Accuracy: the small LM's perplexity and the encoder's agreement at each precision, and the
weight error of coursekit's quantizers next to optimum-quanto's on the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from coursekit import layers, models, quant

from . import variants


def perplexities(model, tokenizer, max_tokens: int | None = None) -> dict:
    out = {}
    kwargs = {} if max_tokens is None else dict(max_tokens=max_tokens)
    calibrate = variants.lm_calibration(tokenizer)
    for name in variants.builders(calibrate):
        q = variants.make(model, name, calibrate)
        out[name] = models.perplexity(q, tokenizer, **kwargs)
    return out


#: The refine step checked end to end: (label, bits, group size).
CLIPPING_FORMATS = (("int4 g128", 4, 128), ("int2 g64", 2, 64))


def _slices(n: int = 8) -> list[str]:
    """The held-out text cut into n slices, slice i being every n-th chapter from chapter i."""
    chapters = models.heldout_text().split("\n\n")
    return ["\n\n".join(chapters[i::n]) for i in range(n)]


def clipping_study(model, tokenizer, encoder=None, encoder_tokenizer=None,
                   max_tokens: int | None = None, n_slices: int = 8) -> dict:
    """clipping="minmax" against clipping="mse", on the weights and on what the model does.

    The MSE search lowers the weight error by construction; whether the model gets better is a
    separate question. Perplexity differences here are a fraction of a percent, the size of the
    noise between samples of text, so each variant is scored on the whole held-out text and on
    ``n_slices`` disjoint slices of it: a real gain wins on (nearly) every slice. ``max_tokens``
    caps each text (for quick runs). With an encoder, its agreement with the fp32 encoder too.
    """
    texts = [models.heldout_text(), *_slices(n_slices)]
    ppl = lambda m: [models.perplexity(m, tokenizer, text=t, max_tokens=max_tokens) for t in texts]
    names = layers.linear_names(model)
    n_weights = sum(model.get_submodule(n).weight.numel() for n in names)
    rows = []
    for label, bits, group_size in CLIPPING_FORMATS:
        row = dict(format=label)
        for clipping in ("minmax", "mse"):
            q = layers.replace_linear(variants.make(model, "fp32"), layers.PackedLinear, exclude=("lm_head",),
                                      bits=bits, group_size=group_size, clipping=clipping)
            # the weight error of the very grids the model computes with
            err = sum(float((q.get_submodule(n).dequantized_weight().double()
                             - model.get_submodule(n).weight.detach().double()).pow(2).sum())
                      for n in names) / n_weights
            whole, *slices = ppl(q)
            row[clipping] = dict(weight_mse=err, perplexity=whole, slice_perplexities=slices)
            if encoder is not None and bits >= 4:
                qe = layers.replace_linear(variants.make(encoder, "fp32"), layers.PackedLinear, bits=bits,
                                           group_size=group_size, clipping=clipping)
                row[clipping]["encoder_mean_cosine"] = models.encoder_agreement(qe, encoder_tokenizer).mean_cosine
        row["mse_wins"] = sum(b < a for a, b in zip(row["minmax"]["slice_perplexities"],
                                                    row["mse"]["slice_perplexities"]))
        rows.append(row)
    return dict(fp32_perplexity=ppl(model)[0], n_slices=n_slices, max_tokens=max_tokens, rows=rows)


def clipping_markdown(r: dict) -> str:
    n = r["n_slices"]
    text = "the whole held-out text" if r["max_tokens"] is None else f"the first {r['max_tokens']} held-out tokens"
    lines = ['The refine step, `clipping="mse"` against plain min/max: weight error, the small LM\'s perplexity '
             f'on {text} (fp32 {r["fp32_perplexity"]:.3f}) and on each of {n} disjoint slices of it, and the '
             "encoder's mean cosine to fp32:", "",
             "| format | weight MSE min/max | weight MSE mse | change | perplexity min/max | perplexity mse "
             "| mse lower on slices | encoder cosine min/max | encoder cosine mse |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["rows"]:
        a, b = x["minmax"], x["mse"]
        cos = lambda d: f"{d['encoder_mean_cosine']:.4f}" if "encoder_mean_cosine" in d else "-"
        lines.append(f"| {x['format']} | {a['weight_mse']:.3e} | {b['weight_mse']:.3e} | "
                     f"{100 * (b['weight_mse'] / a['weight_mse'] - 1):+.1f}% | {a['perplexity']:.3f} | "
                     f"{b['perplexity']:.3f} | {x['mse_wins']} of {n} | {cos(a)} | {cos(b)} |")
    verdicts = []
    for x in r["rows"]:
        d = x["mse"]["perplexity"] - x["minmax"]["perplexity"]
        consistent = d < 0 and x["mse_wins"] >= n - 1
        verdicts.append(f"{x['format']}: {'a consistent gain' if consistent else 'no consistent gain'} "
                        f"({d:+.3f} on the whole text, lower on {x['mse_wins']} of {n} slices)")
    lines += ["", "Perplexity with MSE clipping: " + "; ".join(verdicts) + ". A lower weight error is not "
              "necessarily a lower model error: the search treats every weight alike, while the clipped "
              "extremes can be the weights the outputs depend on most. Notebook 06 shows the same table."]
    return "\n".join(lines)


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
            "optimum-quanto": total(weights4, lambda w: _quanto_dequantized(w, 4, group_size))},
    }
    r["n_weights"] = {"int8": len(weights), "int4": len(weights4)}
    return r


def to_markdown(r: dict) -> str:
    lines = []
    if "perplexity" in r:
        tokens = r.get("perplexity_tokens") or models.DEFAULT_PPL_TOKENS
        lines += [f"Small LM, perplexity on the first {tokens} held-out tokens (the notebooks' yardstick; "
                  "lower is better):", "", "| variant | perplexity |", "|---|---:|"]
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
    if "clipping" in r:
        lines += ["", clipping_markdown(r["clipping"])]
    return "\n".join(lines)
