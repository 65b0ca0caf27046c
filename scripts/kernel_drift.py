"""How far do other CPUs' float kernels move the course's models, and how far does a weight nudge?

Prints the table in notebooks/AUTHORING.md ("Surviving another CPU") that chose the eps of
`make test-perturbed`. Each row runs in a fresh process (kernel sets are read at start-up) and
embeds 256 evaluation sentences with the encoder and scores 2,048 held-out tokens with the course
LM; the columns are the relative L2 difference from the native run.

    .venv/bin/python scripts/kernel_drift.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = [
    ("native (this CPU)", {}),
    ("AMX off", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    ("AVX2 (make test-kernels)", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("SSE", {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                                 "ONEDNN_MAX_CPU_ISA": "SSE41"}),
    ("weights x (1 + 1e-7 N)", {"COURSEKIT_PERTURB": "1e-7"}),
    ("weights x (1 + 1e-6 N)", {"COURSEKIT_PERTURB": "1e-6"}),
    ("weights x (1 + 1e-5 N)", {"COURSEKIT_PERTURB": "1e-5"}),
]

_CHILD = """
import sys, torch
from coursekit import models
from coursekit.models import agreement, corpus
from coursekit.models.encoder import embed
enc, tok = models.load_encoder()
lm, lm_tok = models.load_lm()
with torch.no_grad():
    emb = embed(enc, tok, agreement.evaluation_sentences()[:256], batch_size=128)
    ids = lm_tok(corpus.heldout_text(), add_special_tokens=False)["input_ids"][:2048]
    logits = lm(input_ids=torch.tensor(ids).view(4, 512)).logits.float()
torch.save({"embeddings": emb, "logits": logits}, sys.argv[1])
"""


def _outputs(env_extra: dict, path: Path) -> dict:
    import torch
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_PERTURB")}
    env.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", HF_HUB_OFFLINE="1", **env_extra)
    subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, check=True,
                   stderr=subprocess.DEVNULL)
    return torch.load(path)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = [(name, _outputs(env, Path(tmp) / f"{i}.pt")) for i, (name, env) in enumerate(ROWS)]
    base = results[0][1]
    print("| run | encoder embeddings | LM logits |")
    print("|---|---|---|")
    for name, out in results[1:]:
        cells = [f"{float((out[k] - base[k]).norm() / base[k].norm()):.1e}" for k in ("embeddings", "logits")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
