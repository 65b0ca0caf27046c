"""KV cache on SmolLM2 (notebook 13's targets): perplexity through a quantized cache, memory at 4k.

Teacher-forced in 32-token chunks (`kvcache.chunked_perplexity`) on 8 held-out slices of 512 tokens,
each configuration on the same slices; effects with their noise floor (`models.compare`):

* 4-bit keys per channel, values per token, 32-token window (KIVI): within 1 % of fp32?
* 2 bits: keys per channel against keys per token, above the noise floor?
* the learner-built cache against transformers' quanto-backed QuantizedCache at the same settings;
* bytes at 4,096 tokens (fp16, the cache filled through its own update) against `kv_bytes`.
"""

from __future__ import annotations

import torch

from coursekit import kvcache, models


def run(n_slices: int = 8, tokens: int = 512) -> dict:
    from transformers import QuantizedCache
    model, tok = models.load_lm(models.SMOLLM2)
    slices = models.heldout_slices(tok, n_slices=n_slices, tokens=tokens)
    fp32 = kvcache.chunked_perplexity(model, tok, slices, tokens=tokens)
    configs = {
        "4-bit KIVI, window 32": lambda: kvcache.QuantizedKVCache(4, "channel", "token", residual_length=32),
        "2-bit, keys per channel": lambda: kvcache.QuantizedKVCache(2, "channel", "token", residual_length=0),
        "2-bit, keys per token": lambda: kvcache.QuantizedKVCache(2, "token", "token", residual_length=0),
        "4-bit ours, group 32, no window": lambda: kvcache.QuantizedKVCache(4, "channel", "token", 32, 0),
        "4-bit quanto, group 32, window 32": lambda: QuantizedCache(
            "quanto", model.config, nbits=4, axis_key=-1, axis_value=0, q_group_size=32, residual_length=32),
    }
    ppl = {name: kvcache.chunked_perplexity(model, tok, slices, make, tokens=tokens) for name, make in configs.items()}
    effects = {name: models.compare(fp32, p) for name, p in ppl.items()}
    axis = models.compare(ppl["2-bit, keys per token"], ppl["2-bit, keys per channel"])
    library = models.compare(ppl["4-bit ours, group 32, no window"], ppl["4-bit quanto, group 32, window 32"])
    cache = kvcache.QuantizedKVCache(4, "channel", "token", residual_length=32)
    kv = torch.randn(1, model.config.num_key_value_heads, 4096, model.config.head_dim,
                     generator=torch.Generator().manual_seed(0)).half()
    for layer in range(model.config.num_hidden_layers):
        cache.update(kv, kv, layer)
    fp16_4k = kvcache.kv_bytes(model.config, 4096)
    return dict(
        slices=n_slices, tokens=tokens, fp32=fp32.pooled,
        rows=[dict(name=n, perplexity=p.pooled, relative=effects[n].relative, noise=effects[n].relative_noise,
                   clear=effects[n].clear) for n, p in ppl.items()],
        axis_2bit=dict(per_token=axis.base, per_channel=axis.other, relative=axis.relative,
                       noise=axis.relative_noise, clear=axis.clear),
        library=dict(ours=library.base, quanto=library.other, relative=library.relative,
                     noise=library.relative_noise, clear=library.clear),
        memory_4k=dict(fp16=fp16_4k, kivi4=cache.nbytes, ratio=cache.nbytes / fp16_4k),
        targets=dict(kivi4_within_1pct=abs(effects["4-bit KIVI, window 32"].relative) <= 0.01,
                     memory_4k_at_most_0_3=cache.nbytes / fp16_4k <= 0.3,
                     per_channel_beats_per_token_2bit=axis.clear and axis.relative < 0),
    )


def to_markdown(r: dict) -> str:
    lines = [f"SmolLM2-135M, {r['slices']} held-out slices x {r['tokens']} tokens, fed 32 tokens at a time "
             f"through the cache. fp32 cache: perplexity {r['fp32']:.2f}.", "",
             "| cache | perplexity | vs fp32 | noise floor | above noise |", "|---|---|---|---|---|"]
    lines += [f"| {x['name']} | {x['perplexity']:.2f} | {x['relative']:+.2%} | {x['noise']:.2%} | "
              f"{'yes' if x['clear'] else 'no'} |" for x in r["rows"]]
    a, lib, m, t = r["axis_2bit"], r["library"], r["memory_4k"], r["targets"]
    lines += ["", f"2 bits, keys per token -> per channel: {a['per_token']:.2f} -> {a['per_channel']:.2f} "
              f"({a['relative']:+.1%}, noise floor {a['noise']:.1%}, {'above' if a['clear'] else 'within'} it).",
              f"Ours (group 32, no window) -> quanto (group 32, window 32; its window is empty whenever a chunk "
              f"arrives): {lib['ours']:.2f} -> {lib['quanto']:.2f} ({lib['relative']:+.2%}, noise floor "
              f"{lib['noise']:.2%}, {'above' if lib['clear'] else 'within'} it).",
              f"4,096 tokens: fp16 {m['fp16']:,} bytes, 4-bit KIVI with a 32-token window {m['kivi4']:,} bytes "
              f"= {m['ratio']:.3f} of fp16.", "",
              "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in t.items()) + "."]
    return "\n".join(lines)
