"""Post-training quantization methods against their baselines, on held-out data (coursekit.ptq).

Encoder (all-MiniLM-L6-v2): agreement with fp32 on the 1,024 evaluation sentences and on each of
their 8 slices (``coursekit.models.agreement``), calibrated on 128 sentences of the disjoint calibration
pool (in-domain) or on 128 King James verses (out of domain). A method "wins" a slice when its
mean cosine there is higher than its baseline's: SmoothQuant and the other W8A8 answers against
naive W8A8 per-tensor, AWQ and GPTQ (per-channel) against round-to-nearest at the same bits.
LM (the course's tiny Llama): held-out perplexity, calibrated on its own training text.
"""

from __future__ import annotations

import copy
import time

import torch

from coursekit import ptq
from coursekit.memory import model_nbytes
from coursekit.models import agreement as agr
from coursekit.models import corpus
from coursekit.models.lm import perplexity

#: Targets of issue 17: a method must beat its baseline on at least this many of the 8 slices.
TARGET_WINS = 7


def _timed(model, fn):
    m = copy.deepcopy(model)
    start = time.perf_counter()
    fn(m)
    return m, time.perf_counter() - start


def encoder_rows(model, tok, n_calibration: int = 128, verbose: bool = False) -> list[dict]:
    ref = agr.reference_embeddings(model, tok)
    cal_in = ptq.calibrate(model, tok, agr.calibration_sentences(n_calibration))
    cal_out = ptq.calibrate(model, tok, agr.kjv_sentences(n_calibration))
    methods = [  # (label, baseline label, build)
        ("W8A8 per-tensor (naive)", None, lambda m: ptq.w8a8(m, cal_in)),
        ("W8A8 per-tensor + SmoothQuant a=0.5", "W8A8 per-tensor (naive)", lambda m: ptq.smoothquant(m, cal_in, 0.5)),
        ("W8A8 per-token", "W8A8 per-tensor (naive)", lambda m: ptq.w8a8(m, cal_in, "per_token")),
        ("LLM.int8() t=6", "W8A8 per-tensor (naive)", lambda m: ptq.llm_int8(m)),
    ]
    for bits in (4, 3):
        rtn = f"int{bits} RTN"
        methods += [
            (rtn, None, lambda m, b=bits: ptq.rtn(m, b)),
            (f"int{bits} AWQ", rtn, lambda m, b=bits: ptq.awq(m, cal_in, b, None)),
            (f"int{bits} GPTQ", rtn, lambda m, b=bits: ptq.gptq(m, cal_in, b)),
            (f"int{bits} AWQ (KJV calibration)", rtn, lambda m, b=bits: ptq.awq(m, cal_out, b, None)),
            (f"int{bits} GPTQ (KJV calibration)", rtn, lambda m, b=bits: ptq.gptq(m, cal_out, b)),
        ]
    rows, by_label = [], {}
    for label, base, build in methods:
        m, seconds = _timed(model, build)
        a = agr.agreement(m, tok, ref)
        row = dict(method=label, baseline=base, mean_cosine=a.mean_cosine, tail_cosine=a.tail_cosine,
                   worst_cosine=a.worst_cosine, retrieval=a.retrieval, slice_means=a.slice_means, nbytes=model_nbytes(m),
                   seconds=seconds)
        if base is not None:
            b = by_label[base]
            row["slice_wins"] = sum(x > y for x, y in zip(a.slice_means, b["slice_means"]))
        by_label[label] = row
        rows.append(row)
        if verbose:
            print(row["method"], f"{a} wins={row.get('slice_wins')} s={seconds:.1f}", flush=True)
        del m
    return rows


def lm_rows(model, tok, max_tokens: int | None = None, n_calibration: int = 128) -> list[dict]:
    lines = corpus.training_text().splitlines()
    step = len(lines) // n_calibration
    texts = [" ".join(lines[i * step:i * step + 4]) for i in range(n_calibration)]   # 4 verses each, spread
    cal = ptq.calibrate(model, tok, texts, max_length=128)
    kwargs = {} if max_tokens is None else dict(max_tokens=max_tokens)
    rows = [dict(method="fp32", perplexity=perplexity(model, tok, **kwargs), nbytes=model_nbytes(model),
                 seconds=0.0)]
    for bits in (4, 3):
        for label, build in ((f"int{bits} RTN", lambda m, b=bits: ptq.rtn(m, b)),
                             (f"int{bits} AWQ", lambda m, b=bits: ptq.awq(m, cal, b, None)),
                             (f"int{bits} GPTQ", lambda m, b=bits: ptq.gptq(m, cal, b))):
            m, seconds = _timed(model, build)
            rows.append(dict(method=label, perplexity=perplexity(m, tok, **kwargs), nbytes=model_nbytes(m),
                             seconds=seconds))
    return rows


def run(encoder=None, lm=None, max_tokens: int | None = None, verbose: bool = False,
        n_calibration: int = 128) -> dict:
    """``encoder`` / ``lm``: (model, tokenizer) pairs, either may be None (skipped)."""
    torch.manual_seed(0)
    out = {}
    if encoder is not None:
        out["encoder"] = encoder_rows(*encoder, verbose=verbose)
    if lm is not None:
        out["lm"] = lm_rows(*lm, max_tokens=max_tokens, n_calibration=n_calibration)
    return out


def to_markdown(r: dict) -> str:
    parts = []
    if "encoder" in r:
        parts.append("Encoder, agreement with fp32 on 1,024 held-out sentences (8 slices of 128). "
                     "3-bit codes are stored in 4-bit slots (same size as int4). Time to quantize is "
                     "wall time on this machine, calibration excluded.\n")
        parts.append("| method | mean cos | worst 5% cos | worst cos | top-10 retrieval | slices won vs baseline | MB | s |")
        parts.append("|---|---|---|---|---|---|---|---|")
        for row in r["encoder"]:
            wins = ("" if row["baseline"] is None else
                    f"{row['slice_wins']}/8 vs {row['baseline']}"
                    + (" (target met)" if row["slice_wins"] >= TARGET_WINS else " (below target)"))
            parts.append(f"| {row['method']} | {row['mean_cosine']:.4f} | {row['tail_cosine']:.3f} | "
                         f"{row['worst_cosine']:.3f} | "
                         f"{row['retrieval']:.3f} | {wins} | {row['nbytes'] / 1e6:.2f} | {row['seconds']:.1f} |")
    if "lm" in r:
        parts.append("\nThe course LM, held-out perplexity (calibrated on 128 chunks of its training text):\n")
        parts.append("| method | perplexity | MB | s |")
        parts.append("|---|---|---|---|")
        for row in r["lm"]:
            parts.append(f"| {row['method']} | {row['perplexity']:.3f} | {row['nbytes'] / 1e6:.2f} | "
                         f"{row['seconds']:.1f} |")
    return "\n".join(parts)


if __name__ == "__main__":
    from coursekit import models
    result = run(models.load_encoder(), models.load_lm(), verbose=True)
    print(to_markdown(result))
