"""Exercises of notebook 07 · Build an 8-bit quantizer.

The learner writes the pieces of a W8A16 linear layer: the per-output-channel scales, the int8
codes, the forward pass that dequantizes on the fly, and the bytes it saves. Hidden cases are
built by seeded functions, so every machine sees the same tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import exercise, seeded


# --------------------------------------------------------------------------- 07.int8_scales
def _scales_cases():
    g = seeded(70)
    lopsided = torch.randn(4, 16, generator=g) * 0.05
    lopsided[1, 3] = -0.9                      # the largest magnitude of row 1 is negative
    with_zero_row = torch.randn(3, 8, generator=g)
    with_zero_row[2] = 0.0                     # an all-zero row: scale 1.0
    return [
        (torch.randn(8, 32, generator=g) * 0.02,),
        (lopsided,),
        (with_zero_row,),
        (torch.randn(5, 1, generator=g),),     # one input feature
        (torch.randn(1, 64, generator=g),),    # one output channel
    ]


@exercise(title="per-channel symmetric int8 scales", cases=_scales_cases,
          forbid=("coursekit.layers.int8_per_channel", "coursekit.quant.choose_qparams"),
          hint=("one scale per output channel (row): the row's largest magnitude must map to code 127. "
                "Return a 1-D tensor of length out_features, computed for all rows at once. A row of "
                "zeros gets 1.0.",
                "weight.abs().amax(dim=1) gives each row's largest |value|; divide by 127, and "
                "torch.where(absmax > 0, ..., torch.ones_like(absmax)) gives the zero rows 1.0."))
def int8_scales(weight):
    absmax = weight.abs().amax(dim=1)
    return torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))


# --------------------------------------------------------------------------- 07.int8_codes
def _codes_cases():
    cases = []
    for seed, shape in ((71, (6, 16)), (72, (4, 4)), (73, (3, 1))):
        w = torch.randn(*shape, generator=seeded(seed))
        cases.append((w, int8_scales(w)))
    w = torch.tensor([[0.5, -0.25, 0.126, -1.0]])   # values that land between codes and on the edge
    cases.append((w, int8_scales(w)))
    w = torch.randn(4, 8, generator=seeded(74))
    cases.append((w, int8_scales(w) * 0.5))          # scales too small: codes must be clamped to int8
    return cases


@exercise(title="int8 codes of a weight", cases=_codes_cases,
          forbid=("coursekit.layers.int8_per_channel", "coursekit.quant.linear_quantize",
                  "coursekit.ptq.act_layers.int8_codes"),
          hint=("each row has its own scale, so the 1-D scales must line up with the rows, not the "
                "columns. After dividing: round to the nearest integer, keep inside int8's range (some "
                "hidden scales are too small) and only then change the dtype.",
                "weight / scales[:, None] (or scales.unsqueeze(1)) divides each row by its scale; then "
                "torch.round, .clamp(-128, 127) and .to(torch.int8)."))
def int8_codes(weight, scales):
    return torch.round(weight / scales[:, None]).clamp(-128, 127).to(torch.int8)


# --------------------------------------------------------------------------- 07.w8a16_forward
def _forward_cases():
    cases = []
    for seed, batch, in_f, out_f, has_bias in ((75, (4,), 16, 8, True), (76, (2, 3), 8, 8, True),
                                               (77, (5,), 32, 4, False), (78, (1,), 1, 3, True)):
        g = seeded(seed)
        w = torch.randn(out_f, in_f, generator=g)
        scales = int8_scales(w)
        codes = int8_codes(w, scales)
        bias = torch.randn(out_f, generator=g) if has_bias else None
        cases.append((torch.randn(*batch, in_f, generator=g), codes, scales, bias))
    return cases


@exercise(title="the W8A16 forward pass", cases=_forward_cases, rtol=1e-4, atol=1e-4,
          forbid=("coursekit.layers.W8A16Linear.forward",),
          hint=("the scale of output channel o multiplies every weight of row o, so it can come out of "
                "the sum: multiply x by the int8 weight converted to x's dtype first, then scale each "
                "output. Add the bias only when there is one.",
                "F.linear(x, int8_weight.to(x.dtype)) computes x @ W.T; multiply it by scales (they "
                "broadcast over the last dimension), then add bias if it is not None."))
def w8a16_forward(x, int8_weight, scales, bias):
    y = F.linear(x, int8_weight.to(x.dtype)) * scales
    if bias is not None:
        y = y + bias
    return y


# --------------------------------------------------------------------------- 07.bytes_saved
def _bytes_cases():
    return [(4096, 4096), (256, 688), (688, 256), (3, 5), (1, 1)]


@exercise(title="bytes saved by W8A16", cases=_bytes_cases, rtol=0.0, atol=0.0,
          forbid=("coursekit.memory.model_nbytes",),
          hint=("count the bytes of both layers and subtract. What does each store? The fp32 layer: its "
                "weights. The W8A16 layer: its weights at a narrower width, and something extra for each "
                "output channel. A bias would be the same in both.",
                "fp32: 4 bytes per weight, in_features * out_features weights. W8A16: 1 byte per weight "
                "plus a 4-byte fp32 scale per output channel. Return the difference as an int (negative "
                "for a 1x1 layer)."))
def bytes_saved(in_features, out_features):
    fp32 = 4 * in_features * out_features
    w8a16 = in_features * out_features + 4 * out_features     # int8 weights + one fp32 scale per row
    return fp32 - w8a16
