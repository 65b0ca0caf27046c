"""Package against llama.cpp on the same GGUF files: perplexity on the same slices, scored the same way.

    python scripts/llamacpp_agreement.py [FOLDER]

Exports the course LM and SmolLM2 as F16, Q8_0 and Q4_0 into FOLDER (default: a temporary folder;
files already there are reused), then scores each file twice: the package (the file read back with
gguf, decoded by coursekit, in transformers) and llama.cpp (``coursekit.llamacpp``, `make llama-cpp`).
The course LM is scored on 16 windows of its 256-token context over held-out KJV chapters (4,096
tokens, like ``models.perplexity``), SmolLM2 on the course's default 8 held-out slices of 512 tokens.
For Q8_0 and Q4_0 the package is scored once more with llama.cpp's rounding of every matrix product's
input to Q8_0 blocks (``llamacpp.q8_activations``): the column "q8 in" and its difference.
"""
import sys
import tempfile
import time
from pathlib import Path

import coursekit.models as M
from coursekit import llamacpp
from coursekit.gguf_export import export_gguf, load_gguf_weights

EVAL = {"course LM": (None, dict(n_slices=16, tokens=256, source="kjv")),
        "SmolLM2": (M.SMOLLM2, dict(n_slices=8, tokens=512))}


def main(folder: Path) -> None:
    print(f"{'model':10} {'file':5} {'package':>9} {'llama.cpp':>9} {'diff':>8} {'q8 in':>9} {'diff':>8}  tokens  "
          "seconds (export, package, llama.cpp)")
    for label, (name, kwargs) in EVAL.items():
        model, tok = M.load_lm(name)
        slices = M.heldout_slices(tok, **kwargs)
        for fmt in ("f16", "q8_0", "q4_0"):
            path = folder / f"{label.replace(' ', '_')}-{fmt}.gguf"
            t0 = time.perf_counter()
            if not path.exists():
                export_gguf(model, tok, path, fmt)
            t1 = time.perf_counter()
            fresh, _ = M.load_lm(name)
            ours = M.perplexity_slices(load_gguf_weights(fresh, path), tok, slices, tokens=kwargs["tokens"])
            t2 = time.perf_counter()
            q8_in = ""
            if fmt != "f16":      # the same weights, each matrix product's input rounded as llama.cpp does
                with llamacpp.q8_activations(fresh):
                    q8 = M.perplexity_slices(fresh, tok, slices, tokens=kwargs["tokens"]).pooled
            t2b = time.perf_counter()
            theirs = llamacpp.perplexity(path, slices, tokens=kwargs["tokens"])
            t3 = time.perf_counter()
            assert theirs.tokens == ours.tokens
            if fmt != "f16":
                q8_in = f"{q8:9.4f} {theirs.pooled / q8 - 1:+8.4%}"
            print(f"{label:10} {fmt:5} {ours.pooled:9.4f} {theirs.pooled:9.4f} {theirs.pooled / ours.pooled - 1:+8.4%} "
                  f"{q8_in:18}  {sum(ours.tokens):6}  {t1 - t0:5.1f} {t2b - t1:5.1f} {t3 - t2b:5.1f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
        out.mkdir(parents=True, exist_ok=True)
        main(out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
