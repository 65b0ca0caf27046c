"""Train the course's tiny Llama and write everything in coursekit/assets/.

    python scripts/train_lm.py                 # the real run (~20 min on 2 CPU cores)
    python scripts/train_lm.py --steps 20 --out /tmp/tiny_lm   # a smoke test of the pipeline

Steps: (1) the corpus: the King James Bible, cleaned, split into training text and held-out
chapters, shipped as gzip under coursekit/assets/corpus/ (rebuilt from Debian's `bible` command
only when missing); (2) a byte-level BPE tokenizer; (3) a small LlamaForCausalLM trained with
AdamW and a cosine schedule; (4) the model, tokenizer and a MODEL_CARD.md whose numbers
(perplexities, time, sample) are measured here, not typed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from coursekit import models  # noqa: E402

HELDOUT_EVERY = 25   # every 25th chapter is held out (~4% of the text, spread over the books)
SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>"]


# ---------------------------------------------------------------------------- corpus

def build_corpus() -> tuple[str, str]:
    """Dump the KJV with `bible`, strip the verse references, split by chapter."""
    raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    ref = re.compile(r"^(\w+?)(\d+):(\d+)\s+(.*)$")   # "Ge1:1 In the beginning ..."
    chapters: list[list[str]] = []
    last = None
    for line in raw.splitlines():
        m = ref.match(line.strip())
        if not m:
            continue
        book, chap, _, verse = m.groups()
        if (book, chap) != last:
            chapters.append([])
            last = (book, chap)
        chapters[-1].append(re.sub(r"\s+", " ", verse).strip())
    if len(chapters) != 1189:
        raise RuntimeError(f"expected 1189 chapters from `bible`, parsed {len(chapters)}")
    train, held = [], []
    for i, verses in enumerate(chapters):
        (held if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append("\n".join(verses))
    return "\n\n".join(train) + "\n", "\n\n".join(held) + "\n"


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))   # mtime=0: the same text gives the same bytes


def corpus() -> tuple[str, str]:
    if models.TRAIN_FILE.exists() and models.HELDOUT_FILE.exists():
        print("corpus: using the shipped", models.TRAIN_FILE.parent)
    else:
        print("corpus: building from `bible` (apt-get install bible-kjv)")
        train, held = build_corpus()
        write_gz(models.TRAIN_FILE, train)
        write_gz(models.HELDOUT_FILE, held)
        models.training_text.cache_clear()
        models.heldout_text.cache_clear()
    return models.training_text(), models.heldout_text()


# ---------------------------------------------------------------------------- tokenizer

def train_tokenizer(text: str, vocab_size: int, out: Path):
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tmodels.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([text[i:i + 100_000] for i in range(0, len(text), 100_000)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|eos|>")
    fast.save_pretrained(str(out))
    return fast


# ---------------------------------------------------------------------------- model

def make_model(vocab_size: int, tok, args):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.heads, max_position_embeddings=args.context,
        tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(cfg)


def batches(ids: torch.Tensor, batch: int, seq: int, gen: torch.Generator):
    while True:
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=gen)
        yield torch.stack([ids[s:s + seq] for s in starts]).long()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--max-minutes", type=float, default=30.0,
                    help="time guard: on a slower (busy) machine the cosine schedule is compressed "
                         "to end by then, and training stops there")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)   # divisible by group sizes 32-256
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=models.TINY_LM_DIR)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)

    train_text, held_text = corpus()
    print(f"corpus: train {len(train_text):,} chars, held-out {len(held_text):,} chars")
    t0 = time.time()
    tok = train_tokenizer(train_text, args.vocab, args.out)
    train_ids = torch.tensor(tok(train_text, add_special_tokens=False)["input_ids"], dtype=torch.int32)
    print(f"tokenizer: vocab {len(tok)}, {len(train_ids):,} training tokens ({time.time() - t0:.0f} s)")

    model = make_model(len(tok), tok, args)
    n_params = models.count_parameters(model)
    print(f"model: {n_params:,} parameters")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    budget = args.max_minutes * 60

    def progress_at(step):
        # fraction of training done: by steps, or by the time budget if that runs out first
        # (on an unloaded 2-core machine the steps finish first and the run is reproducible)
        return max((step - warmup) / max(1, args.steps - warmup), (time.time() - t_train) / budget)

    def lr_at(step):   # linear warm-up, then cosine down to 10% of the peak
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = min(1.0, progress_at(step))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    data = batches(train_ids, args.batch, args.context, torch.Generator().manual_seed(args.seed))
    model.train()
    t_train, log, done = time.time(), [], 0
    for step in range(args.steps):
        if step > warmup and progress_at(step) >= 1.0:
            print(f"time budget of {args.max_minutes} min reached after {step} steps")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = next(data)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done += 1
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            log.append((step, round(loss.item(), 4)))
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {el:6.0f} s", flush=True)
    train_seconds = time.time() - t_train
    args.planned_steps = args.steps
    args.steps, args.warmup = done, warmup   # the steps actually taken, for the card
    if log[-1][0] != done - 1:
        log.append((done - 1, round(loss.item(), 4)))
    model.eval()

    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(args.out), safe_serialization=True)
    os.chmod(args.out / "model.safetensors", 0o644)   # readable once installed for other users

    # ---- numbers for the model card, measured with the same functions the notebooks call
    ppl_default = models.perplexity(model, tok)
    uni_default = models.unigram_perplexity(tok, train_text, held_text)
    ppl_full = models.perplexity(model, tok, held_text, max_tokens=None)
    uni_full = models.unigram_perplexity(tok, train_text, held_text, max_tokens=None)
    n_held = len(tok(held_text, add_special_tokens=False)["input_ids"])
    prompt = "And God said unto Moses,"
    sample = models.generate(model, tok, prompt, max_new_tokens=40)
    print(f"held-out ppl {ppl_full:.2f} (unigram {uni_full:.2f}); default slice {ppl_default:.2f} "
          f"(unigram {uni_default:.2f})\nsample: {sample}")
    (args.out / "training_log.json").write_text(json.dumps(
        {"steps": args.steps, "train_seconds": round(train_seconds, 1), "loss": log}, indent=0))
    write_card(args, n_params, train_seconds, len(train_ids), n_held, ppl_full, uni_full,
               ppl_default, uni_default, prompt, sample, len(train_text), len(held_text), log)
    print("wrote", args.out)


def write_card(args, n_params, train_seconds, n_train_tokens, n_held, ppl_full, uni_full,
               ppl_default, uni_default, prompt, sample, n_train_chars, n_held_chars, log):
    tokens_seen = args.steps * args.batch * args.context
    cut_note = ""
    if args.steps < args.planned_steps:
        cut_note = (f"\nThe machine was busy: the {args.max_minutes:g}-minute time guard ended training after "
                    f"{args.steps} of {args.planned_steps} planned steps (the cosine schedule was "
                    "compressed to fit). Rerun on a quiet 2-core machine for the full-length model.\n")
    card = f"""# coursekit tiny Llama

A deliberately small causal language model for a quantization course: it loads in about a
second and runs on a CPU, yet 4-bit and 2-bit weights visibly change its perplexity.
Every number below was written by `scripts/train_lm.py`; rerun it to regenerate this card.

## Corpus and licence
The King James Version of the Bible (public domain), from Debian's `bible-kjv` package
(`bible -f "Gen1:1-Rev22:21"`), verse references stripped, one verse per line, chapters
separated by a blank line. Every {HELDOUT_EVERY}th chapter is held out.
Shipped as `coursekit/assets/corpus/kjv_train.txt.gz` ({n_train_chars:,} characters,
{n_train_tokens:,} tokens) and `kjv_heldout.txt.gz` ({n_held_chars:,} characters, {n_held:,} tokens).
The model weights and tokenizer are released under the same terms as the course code (MIT).

## Architecture
`LlamaForCausalLM`: {args.layers} layers, hidden size {args.hidden}, {args.heads} attention heads,
MLP (SwiGLU) intermediate size {args.intermediate}, context {args.context} tokens, RoPE, RMSNorm,
input embedding tied to the output head (`lm_head`). All projections are `nn.Linear`.
**{n_params:,} parameters** (the tied matrix counted once), stored in fp32 safetensors.
Tokenizer: byte-level BPE trained on the training split, vocabulary {args.vocab}
(specials `<|pad|>`, `<|bos|>`, `<|eos|>`; no special tokens are added to text).

## Training
{args.steps} steps of AdamW (peak LR {args.lr}, betas 0.9/0.95, weight decay 0.1, cosine to 10%
after {args.warmup} warm-up steps, gradient clip 1.0), batches of {args.batch} x {args.context}
random windows of the training tokens ({tokens_seen:,} tokens seen, about
{tokens_seen / n_train_tokens:.1f} epochs), seed {args.seed}, {args.threads} CPU threads.
Training time: **{train_seconds / 60:.1f} minutes**. Final training loss {log[-1][1]:.3f}.
{cut_note}
## Evaluation (held-out chapters)
| | whole held-out split ({n_held:,} tokens) | `perplexity(model, tok)` default slice (first {models.DEFAULT_PPL_TOKENS} tokens) |
|---|---|---|
| this model | **{ppl_full:.2f}** | **{ppl_default:.2f}** |
| add-one unigram baseline (`unigram_perplexity`) | {uni_full:.2f} | {uni_default:.2f} |

Perplexity over non-overlapping {args.context}-token windows. The unigram baseline predicts every
token from its training-split frequency, with no context; the model is far below it.

## Sample (greedy, `generate(model, tok, prompt, max_new_tokens=40)`)
```
{sample}
```

## Limits
A toy: archaic English only, tiny context, no instruction following. It exists to be quantized.
"""
    (args.out / "MODEL_CARD.md").write_text(card)


if __name__ == "__main__":
    main()
