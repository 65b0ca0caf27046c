"""GPTQ onto llama.cpp's block grids: a GGUF file that stores exactly what GPTQ chose.

``gptq`` rounds onto coursekit's own grid and stores ``PackedLinear`` layers. A GGUF file has its
own grids, one per block of 32 weights along a row (``coursekit.formats.ggml``):

* Q8_0: value = d * q, q in -127..127, d = absmax / 127;
* Q4_0: value = d * q, q in -8..7, d = (the value of largest magnitude, with its sign) / -8;
* Q4_1: value = d * q + m, q in 0..15, m = the minimum, d = (max - min) / 15.

The sweep is the same (``gptq._sweep``: notebook 11's column update); only the grid differs. A
block's d (and m) is fixed when the sweep reaches the block's first column, from its values then,
rounded to float16 as the file stores it, and each weight is rounded to the nearest level of the
*stored* grid. So GPTQ's error bookkeeping uses the very values llama.cpp will compute with.

Re-encoding the result with ``formats.encode`` would not give the same blocks back (the encoder
derives d from each block's largest value, and GPTQ may leave no weight on the extreme code), so
the result is the encoded blocks themselves, ``{GGUF tensor name: formats.Encoded}``:
``gguf_export.export_gguf(..., encoded=...)`` writes them as they are, and
``gguf_export.as_exported(..., encoded=...)`` puts their values into the model for scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks, formats, gguf_export
from ..formats.scales import reciprocal
from .calibration import Calibration
from .gptq import BLOCK as LAZY_BLOCK, GROUP_GRIDS, _gptq_weight
from .scaling import linear_of

#: The GGUF types GPTQ rounds onto; any other type in a policy is encoded as usual by the exporter.
GPTQ_TYPES = ("q8_0", "q4_0", "q4_1")
BLOCK = 32


class BlockGrid:
    """One of GGUF's block types as a grid rule for the GPTQ sweep (``gptq.AffineGrid`` says how)."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.qmin, self.qmax = {"q8_0": (-127, 127), "q4_0": (-8, 7), "q4_1": (0, 15)}[fmt]

    def fit(self, values: torch.Tensor):
        """(d, m, 1/d) of each row of ``values`` (rows, 32), d and m as float16 stores them."""
        if self.fmt == "q8_0":
            d, m = values.abs().amax(dim=1) / 127, torch.zeros(values.shape[0])
        elif self.fmt == "q4_0":
            d = values.gather(1, values.abs().argmax(dim=1, keepdim=True)).squeeze(1) / -8
            m = torch.zeros(values.shape[0])
        else:
            m = values.amin(dim=1)
            d = (values.amax(dim=1) - m) / 15
        d, m = d.half().float(), m.half().float()
        return d, m, reciprocal(d)

    def round(self, w: torch.Tensor, d, m, inv):
        q = torch.round((w - m) * inv).clamp_(self.qmin, self.qmax)
        return q, q * d + m

    def encoded(self, codes: torch.Tensor, d: torch.Tensor, m: torch.Tensor) -> formats.Encoded:
        """The blocks as ``formats.encode`` returns them: codes (out, in) and d, m (out, n_blocks)."""
        rows, cols = codes.shape
        blocks = codes.reshape(-1, BLOCK)
        if self.fmt == "q8_0":
            return formats.Encoded("q8_0", (rows, cols), blocks.to(torch.int8), d.reshape(-1).half())
        if self.fmt == "q4_0":
            return formats.Encoded("q4_0", (rows, cols), (blocks + 8).to(torch.uint8), d.reshape(-1).half())
        scales = torch.stack([d.reshape(-1), m.reshape(-1)], dim=1).half()
        return formats.Encoded("q4_1", (rows, cols), blocks.to(torch.uint8), scales)


@torch.no_grad()
def gptq_weight_gguf(w: torch.Tensor, h: torch.Tensor, fmt: str, damp: float = 0.01,
                     group_grid: str = "block_start") -> formats.Encoded:
    """GPTQ of one weight matrix (out, in) with H (in, in) onto GGUF type ``fmt`` (Q8_0, Q4_0 or Q4_1):
    the blocks, ``decode``-able and ready for the file. ``group_grid``: "block_start" (the reference's
    rule, default) or "updated" (see ``gptq.gptq_weight``)."""
    checks.check_tensor(w, "w", floating=True, ndim=2)
    checks.check_tensor(h, "h", floating=True, ndim=2)
    if h.shape != (w.shape[1], w.shape[1]):
        checks.fail("h", f"a ({w.shape[1]}, {w.shape[1]}) matrix (in_features squared)", f"shape {tuple(h.shape)}")
    fmt = checks.check_choice(fmt, "fmt", GPTQ_TYPES)
    if w.shape[1] % BLOCK:
        checks.fail("w", f"rows whose length is a multiple of {BLOCK} (GGUF's block)", f"shape {tuple(w.shape)}")
    damp = checks.check_number(damp, "damp", 0.0, 1.0)
    group_grid = checks.check_choice(group_grid, "group_grid", GROUP_GRIDS[:2])
    rule = BlockGrid(fmt)
    codes, d, m, _ = _gptq_weight(w.detach().float().cpu(), h.detach().float().cpu(), None, BLOCK, damp,
                                  False, LAZY_BLOCK, group_grid, rule)
    return rule.encoded(codes, d, m)


@torch.no_grad()
def gptq_gguf(model: nn.Module, calibration: Calibration, fmt, damp: float = 0.01,
              group_grid: str = "block_start") -> dict:
    """GPTQ of every calibrated linear layer whose type in the policy ``fmt`` is Q8_0, Q4_0 or Q4_1.

    ``fmt``: a GGUF policy, as ``gguf_export.export_gguf`` takes it (one type, or ``{pattern: type}``).
    Returns ``{GGUF tensor name: formats.Encoded}`` for ``export_gguf(..., encoded=...)`` and
    ``as_exported(..., encoded=...)``; the model is not changed. Tensors the calibration does not
    cover (the embedding) or of other types are left to the exporter's round-to-nearest.
    Layers that read the same input share one H, so their rows of one type go through one sweep.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    damp = checks.check_number(damp, "damp", 0.0, 1.0)
    group_grid = checks.check_choice(group_grid, "group_grid", GROUP_GRIDS[:2])
    types = gguf_export.tensor_types(model, fmt)
    out = {}
    for group in calibration.groups:
        by_type = {}
        for name in group:
            kind = types.get(gguf_export.gguf_name(name + ".weight"))
            if kind in GPTQ_TYPES:
                by_type.setdefault(kind, []).append(name)
        for kind, names in by_type.items():
            weights = [linear_of(model, n).weight.detach().float().cpu() for n in names]
            encoded = gptq_weight_gguf(torch.cat(weights), calibration.stats[group[0]].hessian(), kind, damp,
                                       group_grid)
            n_blocks = [w.numel() // BLOCK for w in weights]        # blocks lie within rows: split by rows
            for name, w, c, s in zip(names, weights, encoded.codes.split(n_blocks), encoded.scales.split(n_blocks)):
                out[gguf_export.gguf_name(name + ".weight")] = formats.Encoded(kind, tuple(w.shape), c, s)
    return out


__all__ = ["GPTQ_TYPES", "BlockGrid", "gptq_weight_gguf", "gptq_gguf"]
