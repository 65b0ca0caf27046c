"""Exercises of notebook 14 · the capstone: predict a GGUF file's weight bytes to the byte from the
tensors' shapes and types, choose which upgrades a byte budget buys, and hand in your own file,
graded as a project, rule by rule (`capstone`).
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import threading
from functools import lru_cache

from .project import Assessment, HandInError, Project, Rule
from .spec import exercise

# bytes of one block of 32 weights in each block type, and bytes per weight of the float types
_BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "mxfp4": 17}
_FLOAT_BYTES = {"f32": 4, "f16": 2}


# --------------------------------------------------------------------------- 14.gguf_bytes
def _gguf_bytes_cases():
    smol = {"token_embd.weight": (49152, 576), "blk.0.attn_q.weight": (576, 576),
            "blk.0.attn_k.weight": (192, 576), "blk.0.ffn_down.weight": (576, 1536),
            "blk.0.attn_norm.weight": (576,)}
    mix = {"token_embd.weight": "q8_0", "blk.0.attn_q.weight": "q4_0", "blk.0.attn_k.weight": "q4_1",
           "blk.0.ffn_down.weight": "mxfp4", "blk.0.attn_norm.weight": "f32"}
    return [
        ({"w": (576, 576)}, {"w": "q4_0"}),                  # one matrix, 10,368 blocks of 18 bytes
        (smol, mix),                                          # every type at once, a norm in F32
        (smol, {**{n: "f16" for n in smol}, "blk.0.attn_norm.weight": "f32"}),
        (smol, {**{n: "q4_1" for n in smol}, "blk.0.attn_norm.weight": "f32"}),
        ({"a": (3, 32), "b": (1, 64)}, {"a": "q8_0", "b": "mxfp4"}),     # a handful of blocks
        ({"norm": (7,)}, {"norm": "f32"}),                    # no matrix at all
        ({"w": (256, 4096), "v": (4096,)}, {"w": "q4_1", "v": "f16"}),
    ]


@exercise(title="a GGUF file's weight bytes, to the byte", cases=_gguf_bytes_cases, atol=0.0, rtol=0.0,
          forbid=("coursekit.formats.nbytes", "coursekit.formats.bits_per_weight",
                  "coursekit.gguf_export.predicted_bytes", "coursekit.gguf_export.file_weight_bytes"),
          hint=("a block type stores whole blocks of 32 weights along each row, each block a fixed number of "
                "bytes: turn the bits per weight of the size table into bytes per block (Q4_0's 4.5 bits). "
                "The float types store every weight. Return an int.",
                "for each tensor: n = the product of its shape; f32 takes 4 * n bytes, f16 2 * n, and a block "
                "type n // 32 blocks of 34 (q8_0), 18 (q4_0), 20 (q4_1) or 17 (mxfp4) bytes; add them up.",
                "return sum(4 * n if t == 'f32' else 2 * n if t == 'f16' else n // 32 * {'q8_0': 34, 'q4_0': "
                "18, 'q4_1': 20, 'mxfp4': 17}[t] for n, t in ((math.prod(shapes[k]), types[k]) for k in "
                "shapes))"))
def gguf_bytes(shapes, types):
    """Bytes of the tensors of a GGUF file: ``shapes`` {name: shape}, ``types`` {name: type name}."""
    total = 0
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        kind = types[name]
        total += n * _FLOAT_BYTES[kind] if kind in _FLOAT_BYTES else n // 32 * _BLOCK_BYTES[kind]
    return total


# --------------------------------------------------------------------------- 14.choose_upgrades
def _upgrade_cases():
    return [
        # the greedy pick by gain per byte (c, then a) loses to b alone
        ({"a": (60, 0.05), "b": (100, 0.12), "c": (40, 0.04)}, 100),
        ({"a": (60, 0.05), "b": (100, 0.12), "c": (40, 0.04)}, 160),
        ({"a": (60, 0.05), "b": (100, 0.12), "c": (40, 0.04)}, 39),      # nothing fits
        ({"a": (60, 0.05), "b": (100, 0.12), "c": (40, 0.04)}, 1000),    # everything fits
        ({"x": (10, -0.02), "y": (10, 0.01)}, 50),                       # a loss is never worth bytes
        ({"embd": (1_769_472, 0.008), "q/k": (829_440, 0.001), "v": (207_360, 0.054),
          "o": (622_080, 0.007), "gate/up": (3_317_760, 0.041), "down": (1_658_880, 0.065)}, 2_214_528),
        ({"p": (5, 0.03), "q": (5, 0.03), "r": (9, 0.05)}, 10),         # two small ones beat one big
        ({}, 100),
    ]


@exercise(title="the upgrades a byte budget buys", cases=_upgrade_cases,
          hint=("picking by gain per byte is tempting and can be wrong: a cheap upgrade may use up bytes a "
                "better one needed. With a few options you can afford to try every combination. Return a "
                "sorted list of names; none fits: [].",
                "for r in 0..len(options), for each combination of r names (itertools.combinations): skip it "
                "if its bytes exceed spare_bytes, else keep the one with the largest total gain (on a tie, "
                "the one with fewer bytes).",
                "best = max over every affordable combination of (total gain, -total bytes); return "
                "sorted(best). Leave out an option whose gain is not positive."))
def choose_upgrades(options, spare_bytes):
    """Names of the upgrades (``options``: {name: (extra bytes, gain)}) with the largest total gain whose
    extra bytes fit in ``spare_bytes``, sorted; a tie in gain goes to the cheaper set."""
    names = [n for n, (_, gain) in options.items() if gain > 0]
    best, best_key = (), (0.0, 0)
    for r in range(1, len(names) + 1):
        for combo in itertools.combinations(names, r):
            cost = sum(options[n][0] for n in combo)
            if cost > spare_bytes:
                continue
            key = (sum(options[n][1] for n in combo), -cost)
            if key > best_key:
                best, best_key = combo, key
    return sorted(best)


# --------------------------------------------------------------------------- 14.capstone (a project)
BUDGET = 78_000_000          # bytes of weights the file may take (notebook 14's budget)
HIDDEN_SEED = 1414           # the hidden text: another draw of held-out sentences than the notebook's
HIDDEN_SLICES, HIDDEN_TOKENS = 8, 256
_LOCK = threading.Lock()     # one model serves every judgement of a grading run


@lru_cache(maxsize=1)
def _reference():
    """SmolLM2 (float32, on the CPU), the hidden slices, the names and shapes of its tensors, and
    uniform Q4_0 as the baseline: its weight bytes and its perplexities on the hidden slices."""
    from .. import gguf_export, models
    model, tok = models.load_lm(models.SMOLLM2, device="cpu")
    hidden = models.heldout_slices(tok, HIDDEN_SLICES, HIDDEN_TOKENS, seed=HIDDEN_SEED)
    with gguf_export.as_exported(model, "q4_0"):
        q4_0 = models.perplexity_slices(model, tok, hidden, tokens=HIDDEN_TOKENS)
    q4_0_bytes = sum(gguf_export.predicted_bytes(model, "q4_0").values())
    return model, tok, hidden, gguf_export.tensor_shapes(model), q4_0, q4_0_bytes


def _handed_in(value):
    """(file, predicted_bytes) from what `capstone()` returned, or HandInError saying what is wrong."""
    import torch
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise HandInError("return a pair (file, predicted_bytes): the file's bytes as a uint8 tensor and the "
                          f"weight bytes you predicted, an int; got {type(value).__name__}"
                          + (f" of {len(value)} items" if isinstance(value, (tuple, list)) else ""))
    file, predicted = value
    if not (isinstance(file, torch.Tensor) and file.dtype == torch.uint8 and file.dim() == 1):
        got = (f"a {file.dtype} tensor of shape {tuple(file.shape)}" if isinstance(file, torch.Tensor)
               else type(file).__name__)
        raise HandInError("file: expected the file's bytes as a 1-D uint8 tensor, e.g. torch.frombuffer("
                          f"bytearray(open(path, 'rb').read()), dtype=torch.uint8); got {got}")
    if isinstance(predicted, bool) or not isinstance(predicted, int):
        raise HandInError(f"predicted_bytes: expected an int (bytes of weights), got {type(predicted).__name__}")
    return file, predicted


def _judge_capstone(value) -> Assessment:
    """Five rules, a point each: the file reads as SmolLM2-135M; its weights fit the budget; the
    predicted bytes are exact; on hidden text its perplexity is below uniform Q4_0's; and below it
    by more than the noise floor. The last two are measured only for a file that reads and fits."""
    import gguf
    from .. import gguf_export, models
    file, predicted = _handed_in(value)
    with _LOCK:
        model, tok, hidden, shapes, q4_0, q4_0_bytes = _reference()
        tensors, problem = None, ""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "handed-in.gguf")
            file.numpy().tofile(path)
            try:
                reader = gguf.GGUFReader(path)
                has_tokenizer = "tokenizer.ggml.tokens" in reader.fields
                tensors = gguf_export.read_gguf(reader)
            except Exception as exc:   # not a GGUF file, or a type the course cannot decode
                problem = f"it does not read as a GGUF file ({type(exc).__name__}: {str(exc)[:120]})"
        if tensors is not None:
            got = {name: t.shape for name, t in tensors.items()}
            missing, extra = sorted(set(shapes) - set(got)), sorted(set(got) - set(shapes))
            wrong = sorted(n for n in set(shapes) & set(got) if tuple(shapes[n]) != tuple(got[n]))
            if missing or extra or wrong:
                problem = "; ".join(f"{what}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                                    for what, names in (("missing", missing), ("not SmolLM2's", extra),
                                                        ("wrong shape", wrong)) if names)
            elif not has_tokenizer:
                problem = "it has no tokenizer (llama.cpp could not run it)"
        weight_bytes = sum(t.n_bytes for t in tensors.values()) if tensors is not None else None
        reads = tensors is not None and not problem
        rules = [Rule("the file reads as SmolLM2-135M (its tensors, their shapes, a tokenizer)", 1, reads,
                      f"{len(tensors)} tensors" if reads else problem)]
        fits = weight_bytes is not None and weight_bytes <= BUDGET
        rules.append(Rule(f"its weights fit the budget of {BUDGET:,} bytes", 1, fits,
                          f"{weight_bytes:,} bytes" if weight_bytes is not None else "no weights read"))
        exact = predicted == weight_bytes
        rules.append(Rule("the predicted weight bytes are exact", 1, exact,
                          f"you predicted {predicted:,}" + (f", the file holds {weight_bytes:,}"
                                                           if weight_bytes is not None else "")))
        measures = {"weight MB": weight_bytes / 1e6 if weight_bytes is not None else None,
                    "predicted MB": predicted / 1e6}
        if reads and fits:
            gguf_export.load_gguf_weights(model, tensors)
            mine = models.perplexity_slices(model, tok, hidden, tokens=HIDDEN_TOKENS)
            effect = models.compare(q4_0, mine)
            measures.update({"perplexity": mine.pooled, "against uniform Q4_0 %": 100 * effect.relative})
            # whole numbers: what another CPU's kernels leave unchanged (re-quantizing shifts a few ties)
            against = f"{mine.pooled:.0f} against uniform Q4_0's {q4_0.pooled:.0f}"
            rules.append(Rule("on hidden text, its perplexity is below uniform Q4_0's", 1,
                              mine.pooled < q4_0.pooled, against))
            rules.append(Rule("... by more than the noise floor", 1, effect.relative < 0 and effect.clear,
                              effect.summary()))
        else:
            why = "not measured: the file must read as SmolLM2 and fit the budget first"
            rules += [Rule("on hidden text, its perplexity is below uniform Q4_0's", 1, False, why),
                      Rule("... by more than the noise floor", 1, False, why)]
    return Assessment(tuple(rules), measures, {"uniform Q4_0": (q4_0_bytes / 1e6, q4_0.pooled),
                                               "the budget": (BUDGET / 1e6, None)})


@exercise(title="your file, graded as a project", points=5,
          project=Project(_judge_capstone, plot=("weight MB", "perplexity")),
          hint=("five rules, a point each; the message says which did not pass and what was measured. The file "
                "travels as its bytes: read it into a uint8 tensor; the prediction is the sum of section 4's "
                "predicted bytes.",
                "return (torch.frombuffer(bytearray(open(path, 'rb').read()), dtype=torch.uint8), predicted) "
                "with `path` your exported file and `predicted` = sum(gguf_export.predicted_bytes(model, "
                "POLICY).values()); to beat uniform Q4_0 by more than the noise, spend the budget's spare "
                "bytes where section 3 measured a clear gain."))
def capstone():
    """Your GGUF file of SmolLM2-135M and your prediction of its weight bytes: ``(file, predicted_bytes)``,
    ``file`` the file's bytes as a 1-D uint8 tensor. Judged by rules, not against this function: this
    is one answer among many (section 4's policy: attention v and MLP down in Q4_1, the rest Q4_0)."""
    import torch
    from .. import gguf_export, models
    model, tok = models.load_lm(models.SMOLLM2, device="cpu")
    policy = {"blk.*.attn_v.weight": "q4_1", "blk.*.ffn_down.weight": "q4_1", "*": "q4_0"}
    predicted = sum(gguf_export.predicted_bytes(model, policy).values())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "smollm2-policy.gguf")
        gguf_export.export_gguf(model, tok, path, policy)
        with open(path, "rb") as f:
            file = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    return file, predicted
