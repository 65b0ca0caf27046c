"""Quantizer speed on one large fp32 weight: coursekit against the alternatives.

Every contender quantizes the same n x n weight; `W.amax()` (one read pass over the weight) is
the floor, since any quantizer must read every value at least once.
"""

from __future__ import annotations

import time
import warnings

import torch

from coursekit import quant

from .timing import interleaved_median_ms, median_ms


def _quanto_int8(w):
    from optimum.quanto import qint8
    from optimum.quanto.tensor.optimizers import AbsmaxOptimizer
    from optimum.quanto.tensor.weights import quantize_weight
    scale = AbsmaxOptimizer()(w, qint8, axis=0)
    return quantize_weight(w, qint8, axis=0, scale=scale)


def _quanto_int4_g128(w):
    from optimum.quanto import qint4
    from optimum.quanto.tensor.optimizers import MaxOptimizer
    from optimum.quanto.tensor.weights import quantize_weight
    scale, shift = MaxOptimizer()(w, qint4, axis=0, group_size=128)
    return quantize_weight(w, qint4, axis=0, scale=scale, shift=shift, group_size=128)


def _torch_per_channel(w):
    scale = w.abs().amax(dim=1) / 127
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch marks its quantized dtypes as deprecated
        return torch.quantize_per_channel(w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long),
                                          0, torch.qint8).int_repr()


def _row_loop(w):
    """What a first attempt often looks like: one quantize call per output row."""
    return [quant.quantize(row, bits=8, symmetric=True) for row in w]


def _eager(fn):
    def run(*args, **kwargs):
        enabled, quant.fast_path.enabled = quant.fast_path.enabled, False
        try:
            return fn(*args, **kwargs)
        finally:
            quant.fast_path.enabled = enabled
    return run


def run(n: int = 4096, repeats: int = 7, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    w = torch.randn(n, n)
    configs = {
        "int8 per-channel symmetric": dict(bits=8, symmetric=True, granularity="per_channel"),
        "int4 per-group g128 asymmetric": dict(bits=4, granularity="per_group", group_size=min(128, n)),
    }
    checks, compile_s = {}, {}
    for label, cfg in configs.items():
        start = time.perf_counter()
        fast = quant.quantize(w, **cfg)            # first call compiles when the fast path applies
        compile_s[label] = time.perf_counter() - start
        eager = _eager(quant.quantize)(w, **cfg)
        checks[label] = bool(torch.equal(fast.data, eager.data) and torch.equal(fast.scale, eager.scale)
                             and torch.equal(fast.zero_point, eager.zero_point))
    # (name, config it competes in, function); all but the Python loop are timed in rounds
    contenders = [("one read pass (W.amax())", "floor", lambda: w.amax()),
                  ("copy (W.clone())", "floor", lambda: w.clone())]
    for label, cfg in configs.items():
        contenders += [(f"coursekit quantize: {label}", label, lambda cfg=cfg: quant.quantize(w, **cfg)),
                       (f"coursekit eager (fast path off): {label}", label,
                        lambda cfg=cfg: _eager(quant.quantize)(w, **cfg))]
    contenders.append(("optimum-quanto qint8 per-channel", "int8 per-channel symmetric", lambda: _quanto_int8(w)))
    if n % 128 == 0:
        contenders.append(("optimum-quanto qint4 g128", "int4 per-group g128 asymmetric",
                           lambda: _quanto_int4_g128(w)))
    contenders.append(("torch.quantize_per_channel (qint8)", "int8 per-channel symmetric",
                       lambda: _torch_per_channel(w)))
    ms = interleaved_median_ms({name: fn for name, _, fn in contenders}, repeats)
    rows = [(name, cfg, ms[name]) for name, cfg, _ in contenders]
    rows.append(("Python loop over rows (coursekit per row)", "int8 per-channel symmetric",
                 median_ms(lambda: _row_loop(w), repeats=3, warmup=0)))
    floor = ms["one read pass (W.amax())"]
    table = [dict(name=name, config=cfg, ms=ms, x_floor=ms / floor) for name, cfg, ms in rows]
    by_name = {r["name"]: r["ms"] for r in table}
    ratios = {}
    for label, peer in (("int8 per-channel symmetric", "optimum-quanto qint8 per-channel"),
                        ("int4 per-group g128 asymmetric", "optimum-quanto qint4 g128")):
        ours = by_name[f"coursekit quantize: {label}"]
        ratios[label] = dict(speedup_vs_quanto=by_name.get(peer, float("nan")) / ours,
                             x_floor=ours / floor,
                             speedup_vs_eager=by_name[f"coursekit eager (fast path off): {label}"] / ours)
    return dict(shape=[n, n], repeats=repeats, rows=table, ratios=ratios, identical_to_eager=checks,
                first_call_s=compile_s, fast_path_error=quant.fast_path.error,
                torch_threads=torch.get_num_threads())


def to_markdown(r: dict) -> str:
    lines = [f"Weight {r['shape'][0]}x{r['shape'][1]} fp32, median of {r['repeats']} runs, "
             f"{r['torch_threads']} torch threads.", "",
             "| quantizer | ms | × one read pass |", "|---|---:|---:|"]
    lines += [f"| {row['name']} | {row['ms']:.1f} | {row['x_floor']:.1f} |" for row in r["rows"]]
    lines += ["", "| config | speed-up vs optimum-quanto | × one read pass | speed-up vs eager | identical to eager |",
              "|---|---:|---:|---:|---|"]
    for label, v in r["ratios"].items():
        lines.append(f"| {label} | {v['speedup_vs_quanto']:.1f}× | {v['x_floor']:.1f} | "
                     f"{v['speedup_vs_eager']:.1f}× | {r['identical_to_eager'][label]} |")
    first = ", ".join(f"{k}: {v:.1f} s" for k, v in r["first_call_s"].items())
    lines += ["", f"First call (includes torch.compile of the fast path when it applies): {first}."]
    if r["fast_path_error"]:
        lines.append(f"The fast path was unavailable: {r['fast_path_error']}")
    return "\n".join(lines)
