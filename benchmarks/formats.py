"""Number formats: error against bits per weight on the encoder's and the LM's linear weights,
and what the 4-bit formats do to the models (the LM's perplexity, the encoder's cosine to fp32).

Bits per weight count every scale (``coursekit.formats.nbytes``); the error is relative,
sum((w - w_q)^2) / sum(w^2) over all linear weights (not embeddings or the head).
"""

from __future__ import annotations

from coursekit import models
from coursekit.formats.compare import VARIANTS, weight_table

FOUR_BIT = [v for v in VARIANTS if not v.startswith(("FP8", "Q8_0"))]


def run(lm, lm_tokenizer, encoder=None, encoder_tokenizer=None, agreement: bool = True,
        max_tokens: int | None = None) -> dict:
    named = {"LM": lm} if encoder is None else {"encoder": encoder, "LM": lm}
    rows = weight_table(named, keep=FOUR_BIT if agreement else ())
    out = {"rows": [dict(variant=r.variant, bits=r.bits, error=r.error) for r in rows]}
    if agreement:
        kwargs = {} if max_tokens is None else dict(max_tokens=max_tokens)
        out["fp32_perplexity"] = models.perplexity(lm, lm_tokenizer, **kwargs)
        agree = {}
        for r in rows:
            if r.variant not in FOUR_BIT:
                continue
            agree[r.variant] = {"perplexity": models.perplexity(r.models["LM"], lm_tokenizer, **kwargs)}
            if encoder is not None:
                agree[r.variant]["encoder_mean_cosine"] = models.encoder_agreement(
                    r.models["encoder"], encoder_tokenizer).mean_cosine
            r.models.clear()                      # free the copies as soon as they are measured
        out["agreement"] = agree
    return out


def to_markdown(r: dict) -> str:
    labels = list(r["rows"][0]["bits"])
    agree = r.get("agreement", {})
    head = (["format"] + [f"{lab} bits/weight" for lab in labels] + [f"{lab} rel. error" for lab in labels]
            + (["LM perplexity", "encoder cosine"] if agree else []))
    lines = ["Error against bits per weight (every scale counted), on every linear weight of "
             + " and ".join(labels) + "; the 4-bit formats also in the models"
             + (f" (fp32 perplexity {r['fp32_perplexity']:.3f})" if agree else "") + ":", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in r["rows"]:
        cells = [row["variant"]] + [f"{row['bits'][lab]:.3f}" for lab in labels] + \
                [f"{row['error'][lab]:.3g}" for lab in labels]
        if agree:
            a = agree.get(row["variant"], {})
            cells += [f"{a['perplexity']:.3f}" if "perplexity" in a else "",
                      f"{a['encoder_mean_cosine']:.4f}" if "encoder_mean_cosine" in a else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
