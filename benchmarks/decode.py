"""Decode speed: when do int8 / int4 weights make a model faster on this CPU?

Generating one token multiplies one activation row by every weight of the model: each weight byte is
read from memory once and used for two flops, so the time per token is about the time to read the
weights. A stack of 4096 x 4096 layers whose int8 weights are several times the last-level cache
(LLC) makes that visible: repeating one small layer would time the cache, not memory. Every
variant's time is set against its own floor, its stored bytes divided by the read bandwidth
measured here (summing a large tensor), so "1.3x floor" means "30 % slower than just reading the
weights". At batch 64 each weight is used 64 times per read and arithmetic takes over.

Variants: fp32 and bf16 ``nn.Linear``; the readable ``coursekit.layers.W8A16Linear`` (dequantizes the
whole weight, then a float matmul); the fused kernels of ``coursekit.kernels`` (int8 per channel, int4
in groups of 128). All are timed in interleaved rounds (timing.interleaved_median_ms), the
bandwidth probe among them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coursekit import kernels, layers
from coursekit.memory import model_nbytes

from .timing import interleaved_median_ms

MiB = 2 ** 20
BANDWIDTH = "read bandwidth probe"
VARIANTS = ("fp32", "bf16", "W8A16 (readable, coursekit.layers)", "int8 kernel", "int4 kernel (g128)")


# --------------------------------------------------------------------------- the machine
def llc_bytes() -> tuple[int, str]:
    """Size of one last-level cache and where it was read (coursekit.kernels.llc_bytes)."""
    return kernels.llc_bytes()


# --------------------------------------------------------------------------- the stacks
def _float_stack(n: int, n_layers: int) -> nn.Sequential:
    """n_layers bias-free n x n Linear layers, weights ~ N(0, 1/n) so activations keep their scale."""
    g = torch.Generator().manual_seed(0)
    stack = nn.Sequential()
    for _ in range(n_layers):
        lin = nn.Linear(n, n, bias=False, device="meta")
        lin.weight = nn.Parameter(torch.randn(n, n, generator=g) / math.sqrt(n), requires_grad=False)
        stack.append(lin)
    return stack.eval()


def build_variants(n: int, n_layers: int) -> dict[str, nn.Module]:
    fp32 = _float_stack(n, n_layers)
    quantized = {name: nn.Sequential(*(cls.from_linear(lin, **kw) for lin in fp32)).eval()
                 for name, cls, kw in ((VARIANTS[2], layers.W8A16Linear, {}),
                                       (VARIANTS[3], kernels.Int8WeightLinear, {}),
                                       (VARIANTS[4], kernels.Int4WeightLinear, {"group_size": 128}))}
    bf16 = nn.Sequential()
    for src in fp32:
        lin = nn.Linear(n, n, bias=False, device="meta")
        lin.weight = nn.Parameter(src.weight.detach().to(torch.bfloat16), requires_grad=False)
        bf16.append(lin)
    return {VARIANTS[0]: fp32, VARIANTS[1]: bf16, **quantized}


def _input_dtype(model: nn.Module) -> torch.dtype:
    return torch.bfloat16 if next(model.parameters(), torch.empty(0)).dtype == torch.bfloat16 else torch.float32


def _path(model: nn.Module) -> str:
    first = model[0]
    return first.path if getattr(first, "path", None) else ("float matmul" if isinstance(first, nn.Linear)
                                                            else "dequantize, then float matmul")


# --------------------------------------------------------------------------- the run
def run(n: int = 4096, n_layers: int | None = None, repeats: int = 7, batch_repeats: int = 3,
        batch: int = 64) -> dict:
    """Time per token at batch 1 and `batch` of each variant, and each variant's memory floor."""
    llc, llc_source = llc_bytes()
    if n_layers is None:   # int8 weights (n*n bytes a layer) at least 4x the LLC, within reason
        n_layers = min(32, max(2, math.ceil(4 * llc / (n * n))))
    probe = torch.ones(max(4 * llc, 256 * MiB) // 4)       # fp32, summed: well beyond any cache
    models = build_variants(n, n_layers)
    nbytes = {name: model_nbytes(m) for name, m in models.items()}
    torch.manual_seed(0)
    rows, bandwidth = [], None
    with torch.inference_mode():
        for m_rows, reps in ((1, repeats), (batch, batch_repeats)):
            xs = {name: torch.randn(m_rows, n).to(_input_dtype(m)) for name, m in models.items()}
            fns = {name: (lambda m=m, x=xs[name]: m(x)) for name, m in models.items()}
            if m_rows == 1:
                fns[BANDWIDTH] = lambda: probe.sum()
            ms = interleaved_median_ms(fns, reps)
            if m_rows == 1:
                bandwidth = probe.numel() * 4 / (ms.pop(BANDWIDTH) / 1e3)      # bytes per second
            for name in models:
                floor_ms = nbytes[name] / bandwidth * 1e3
                rows.append(dict(variant=name, batch=m_rows, ms_per_step=ms[name], ms_per_token=ms[name] / m_rows,
                                 weight_bytes=nbytes[name], floor_ms=floor_ms, x_floor=ms[name] / floor_ms,
                                 path=_path(models[name])))
    for row in rows:
        base = next(r for r in rows if r["batch"] == row["batch"] and r["variant"] == VARIANTS[0])
        row["x_fp32"] = row["ms_per_step"] / base["ms_per_step"]
    features = kernels.cpu_features()
    return dict(rows=rows, n=n, n_layers=n_layers, batch=batch, llc_bytes=llc, llc_source=llc_source,
                int8_weight_bytes=n * n * n_layers, bandwidth_gbs=bandwidth / 1e9, probe_bytes=probe.numel() * 4,
                threads=torch.get_num_threads(), cpu_features=features.summary,
                cpu_flags={k: v for k, v in vars(features).items() if isinstance(v, bool)})


# --------------------------------------------------------------------------- the report
def _speed_words(x_fp32: float) -> str:
    if x_fp32 < 0.95:
        return f"{1 / x_fp32:.1f}x faster than fp32"
    if x_fp32 > 1.05:
        return f"{x_fp32:.1f}x slower than fp32"
    return "as fast as fp32"


def to_markdown(r: dict) -> str:
    rows = {(x["variant"], x["batch"]): x for x in r["rows"]}
    b = r["batch"]
    lines = [f"A stack of {r['n_layers']} {r['n']}x{r['n']} linear layers; its int8 weights are "
             f"{r['int8_weight_bytes'] / MiB:.0f} MiB, {r['int8_weight_bytes'] / r['llc_bytes']:.1f}x the "
             f"{r['llc_bytes'] / MiB:.0f} MiB last-level cache ({r['llc_source']}), "
             + _cache_words(r, rows)
             + f"Measured read bandwidth (sum of a {r['probe_bytes'] / MiB:.0f} MiB tensor): "
             f"**{r['bandwidth_gbs']:.1f} GB/s**. Floor = a variant's stored bytes / that bandwidth. "
             f"CPU: {r['cpu_features']}; {r['threads']} torch threads; medians of interleaved rounds.", "",
             f"| variant | weights (MiB) | batch 1: ms/token | x floor | x fp32 | batch {b}: ms/token | x floor | "
             "x fp32 | path |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in VARIANTS:
        one, many = rows[(name, 1)], rows[(name, b)]
        lines.append(f"| {name} | {one['weight_bytes'] / MiB:.0f} | {one['ms_per_token']:.2f} | "
                     f"{one['x_floor']:.2f} | {one['x_fp32']:.2f} | {many['ms_per_token']:.3f} | "
                     f"{many['x_floor']:.2f} | {many['x_fp32']:.2f} | {one['path']} |")
    lines += ["", _prose(r, rows)]
    return "\n".join(lines)


def _cache_words(r: dict, rows: dict) -> str:
    """Whether the stack streams from memory: every variant's weights should be well over the LLC."""
    llc, int8 = r["llc_bytes"], r["int8_weight_bytes"]
    if int8 <= llc:
        return "so they can stay in cache: this run times the cache, not memory (use the full size). "
    words = "so each token reads them from memory. " if int8 >= 2 * llc else "so they do not fit in it. "
    small = [f"{v} ({rows[(v, 1)]['weight_bytes'] / MiB:.0f} MiB)" for v in VARIANTS
             if rows[(v, 1)]["weight_bytes"] < 2 * llc]
    if small:
        words += (f"Weights under twice the cache size may be served partly from it: {', '.join(small)} "
                  "(the stack is capped at 32 layers). ")
    return words


def _prose(r: dict, rows: dict) -> str:
    """What the numbers say, in sentences chosen by the numbers (no fixed claims about the CPU)."""
    b, flags = r["batch"], r["cpu_flags"]
    fp32, bf16, w8, i8, i4 = VARIANTS
    one = {v: rows[(v, 1)] for v in VARIANTS}
    many = {v: rows[(v, b)] for v in VARIANTS}
    direct = [fp32, bf16, i8, i4]          # the variants that compute on what they store
    by_bytes = sorted(direct, key=lambda v: -one[v]["weight_bytes"])
    by_time = sorted(direct, key=lambda v: -one[v]["ms_per_token"])
    near = [v for v in direct if one[v]["x_floor"] < 1.5]
    far = ", ".join(f"{v} {one[v]['x_floor']:.1f}x" for v in direct if v not in near)
    out = [f"**Batch 1 (decoding one token).** int8 kernel {one[i8]['ms_per_token']:.1f} ms/token, "
           f"{_speed_words(one[i8]['x_fp32'])}; int4 kernel {one[i4]['ms_per_token']:.1f} ms/token, "
           f"{_speed_words(one[i4]['x_fp32'])}; bf16 {_speed_words(one[bf16]['x_fp32'])}. "
           + ("The times fall in the order of the bytes each variant reads (" if by_time == by_bytes else
              "The times do not fall in the order of the bytes read (") + " > ".join(by_bytes) + "). "
           + (f"{', '.join(near)} {'runs' if len(near) == 1 else 'run'} within 1.5x of the memory floor: "
              "reading the weights is the cost. " if near else "")
           + (f"Time over floor: {far}: more than reading the weights is at work (unpacking and arithmetic "
              "that do not keep up with memory on this CPU, or a busy machine)." if far else "")]
    out.append(f"The readable W8A16 layer stores as few bytes as the int8 kernel but is "
               f"{_speed_words(one[w8]['x_fp32'])} ({one[w8]['x_floor']:.1f}x its floor): every call writes and "
               "reads a full fp32 copy of the weight before the matmul.")
    best_float = min((fp32, bf16), key=lambda v: many[v]["ms_per_token"])
    lowest = min(many[v]["x_floor"] for v in VARIANTS)
    out.append(f"**Batch {b} (a prompt, or many sequences at once).** Each weight read serves {b} rows: fp32 takes "
               f"{many[fp32]['ms_per_token']:.3f} ms/token and every variant is "
               + (f"{lowest:.0f}x or more above its memory floor per step: arithmetic dominates. "
                  if lowest >= 3 else f"the fastest is still within {lowest:.1f}x of its memory floor per step. ")
               + f"Against the fastest float variant ({best_float}) the int8 kernel takes "
               f"{many[i8]['ms_per_token'] / many[best_float]['ms_per_token']:.1f}x and the int4 kernel "
               f"{many[i4]['ms_per_token'] / many[best_float]['ms_per_token']:.1f}x its time. These kernels turn codes "
               "into floats inside the matmul and multiply in fp32 (weight-only: activations are never quantized): "
               "they save bytes, not flops.")
    int8_dot = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if flags.get(f)]
    bf16_dot = [f for f in ("avx512_bf16", "amx_bf16") if flags.get(f)]
    out.append("This CPU " + (f"has bf16 dot-product instructions ({', '.join(bf16_dot)})" if bf16_dot else
                              "has no bf16 dot-product instructions")
               + " and " + (f"int8 dot-product instructions ({', '.join(int8_dot)}), which these weight-only "
                            "kernels do not use." if int8_dot else "no int8 dot-product instructions (VNNI/AMX)."))
    best1 = min((i8, i4), key=lambda v: one[v]["x_fp32"])
    bestb = min((i8, i4), key=lambda v: many[v]["x_fp32"])
    out.append("**Verdict.** " + (f"Quantized weights made decoding faster here: the {best1} is "
                                  f"{_speed_words(one[best1]['x_fp32'])} at batch 1" if one[best1]["x_fp32"] < 0.95
                                  else "Quantized weights did not make decoding faster here (best: the "
                                  f"{best1}, {_speed_words(one[best1]['x_fp32'])} at batch 1)")
               + f"; at batch {b} the {bestb} is {_speed_words(many[bestb]['x_fp32'])}.")
    return "\n\n".join(out)
