"""Exercises of notebook 14 · the capstone: predict a GGUF file's weight bytes to the byte from the
tensors' shapes and types, and choose which upgrades a byte budget buys.
"""

from __future__ import annotations

import itertools

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
