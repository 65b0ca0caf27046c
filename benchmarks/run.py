"""Run the benchmarks and write benchmarks/results/{report.md, results.json, *.png}.

    python -m benchmarks.run                  # everything (make bench), ~6 minutes on 2 quiet cores
    python -m benchmarks.run --only speed     # one section
    python -m benchmarks.run --quick          # small sizes: checks that the code runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

from coursekit import models, plots  # noqa: E402

from . import accuracy, decode, formats, kvcache as kv_bench, latency, notebook_times, sizes, speed  # noqa: E402
from . import ptq as ptq_bench  # noqa: E402
from . import smollm2_ptq  # noqa: E402

SECTIONS = ("speed", "memory", "accuracy", "notebooks", "grading", "latency", "decode", "formats", "ptq", "kvcache", "smollm2")
TITLES = {"speed": "1. Quantizer speed", "memory": "2. Memory", "accuracy": "3. Accuracy",
          "notebooks": "4. Notebook wall times", "grading": "5. Grading throughput",
          "latency": "6. Inference latency", "decode": "7. Decoding: when do int8/int4 weights make it faster?",
          "formats": "8. Number formats: error against bits per weight",
          "ptq": "9. Post-training quantization: SmoothQuant, AWQ, GPTQ against their baselines",
          "kvcache": "10. KV cache: perplexity through a quantized cache, memory at 4k (SmolLM2)",
          "smollm2": "11. A real LLM: RTN, AWQ and GPTQ on SmolLM2-135M, with noise floors and the cost of GPTQ"}


def run_section(name: str, quick: bool, cache: dict) -> tuple[dict, str]:
    def lm():
        if "lm" not in cache:
            cache["lm"] = models.load_lm()
        return cache["lm"]

    def encoder():
        if "enc" not in cache:
            cache["enc"] = models.load_encoder()
        return cache["enc"]

    if name == "speed":
        r = speed.run(n=512 if quick else 4096, repeats=3 if quick else 15)
        return r, speed.to_markdown(r)
    if name == "memory":
        r = sizes.run({"small LM": lm()[0], "encoder": encoder()[0]})
        return r, sizes.to_markdown(r)
    if name == "accuracy":
        model, tok = lm()
        tokens = 512 if quick else models.DEFAULT_PPL_TOKENS
        r = {"perplexity": accuracy.perplexities(model, tok, max_tokens=tokens), "perplexity_tokens": tokens,
             "weight_mse": accuracy.weight_errors(model)}
        if not quick:
            r["agreement"] = accuracy.agreements(*encoder())
        r["clipping"] = accuracy.clipping_study(model, tok, *(encoder() if not quick else (None, None)),
                                                max_tokens=512 if quick else None)
        return r, accuracy.to_markdown(r)
    if name == "notebooks":
        r = notebook_times.run(paths=[] if quick else None)
        return r, notebook_times.to_markdown(r)
    if name == "grading":
        from . import grading_throughput   # imports the grader only when this section runs
        r = grading_throughput.run(n_submissions=2 if quick else 6)
        return r, grading_throughput.to_markdown(r)
    if name == "latency":
        model, tok = lm()
        r = latency.run(model, tok, n=512 if quick else 4096, repeats=3 if quick else 7)
        return r, latency.to_markdown(r)
    if name == "decode":   # about 30 s on 2 quiet cores; quick: small layers that fit in cache
        r = decode.run(n=1024, n_layers=4, repeats=2, batch_repeats=1) if quick else decode.run()
        return r, decode.to_markdown(r)
    if name == "formats":  # quick: the LM only, on 512 tokens
        r = formats.run(*lm(), max_tokens=512) if quick else formats.run(*lm(), *encoder())
        return r, formats.to_markdown(r)
    if name == "ptq":      # quick: the LM only, on 512 tokens (the encoder part takes minutes)
        r = ptq_bench.run(None, lm(), max_tokens=512) if quick else ptq_bench.run(encoder(), lm())
        return r, ptq_bench.to_markdown(r)
    if name == "kvcache":  # about a minute on 2 quiet cores; quick: 2 slices of 128 tokens
        r = kv_bench.run(n_slices=2, tokens=128) if quick else kv_bench.run()
        return r, kv_bench.to_markdown(r)
    if name == "smollm2":  # about 4 minutes on 2 quiet cores; quick: 2 slices of 128 tokens, no cost run
        r = smollm2_ptq.run(n_slices=2, tokens=128, with_cost=False) if quick else smollm2_ptq.run()
        return r, smollm2_ptq.to_markdown(r)
    raise ValueError(f"unknown section {name!r}; choose from {SECTIONS}")


def figures(results: dict, out: Path) -> list[str]:
    made = []
    if "speed" in results:
        rows = results["speed"]["rows"]
        fig = plots.plot_bars({r["name"].replace("coursekit ", "ck ")[:38]: r["ms"] for r in rows},
                              "milliseconds (log)", "Quantizing a 4096x4096 weight", logy=True)
        fig.set_size_inches(12, 4.5)
        fig.savefig(out / "speed.png", dpi=110, bbox_inches="tight")
        made.append("speed.png")
    if "memory" in results and "accuracy" in results:
        ppl = results["accuracy"]["perplexity"]
        mem = {r["variant"]: r["model_nbytes"] for r in results["memory"]["rows"] if r["model"] == "small LM"}
        common = [k for k in ppl if k in mem]
        series = {k: ([mem[k] / 1e6], [ppl[k]]) for k in common}
        fig = plots.plot_lines(series, "model_nbytes (MB)", "held-out perplexity",
                               "Small LM: size against perplexity", logy=True)
        fig.set_size_inches(8, 4.5)
        fig.savefig(out / "size_vs_perplexity.png", dpi=110, bbox_inches="tight")
        made.append("size_vs_perplexity.png")
    if "latency" in results:
        rows = [r for r in results["latency"]["rows"] if r["what"].startswith("Linear")]
        fig = plots.plot_bars({r["variant"][:30]: r["x_fp32"] for r in rows}, "time relative to fp32",
                              rows[0]["what"] if rows else "")
        fig.set_size_inches(11, 4.2)
        fig.savefig(out / "latency.png", dpi=110, bbox_inches="tight")
        made.append("latency.png")
    return made


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--quick", action="store_true", help="small sizes, to check that everything runs")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, parts, cache = {}, [], {}
    for name in names:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results[name], md = run_section(name, args.quick, cache)
        parts.append(f"## {TITLES[name]}\n\n{md}\n\n_(section took {time.perf_counter() - start:.0f} s)_\n")
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                python=platform.python_version(), torch=torch.__version__, machine=platform.machine(),
                cpus=os.cpu_count(), threads=torch.get_num_threads(), quick=args.quick)
    made = figures(results, out)
    header = (f"# coursekit benchmarks\n\n{meta['date']} · Python {meta['python']} · torch {meta['torch']} · "
              f"{meta['cpus']} CPUs ({meta['machine']}) · {'quick run' if args.quick else 'full run'}\n\n"
              "Measurements on the machine that ran `make bench`; they are figures, not tests.\n\n")
    figs = "".join(f"![{m}]({m})\n" for m in made)
    (out / "report.md").write_text(header + "\n".join(parts) + ("\n## Figures\n\n" + figs if figs else ""))
    (out / "results.json").write_text(json.dumps(dict(meta=meta, **results), indent=1, default=str))
    print(f"[bench] wrote {out / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
