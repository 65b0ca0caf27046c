"""GPTQ (Frantar et al., 2022): round one column at a time and let the others absorb the error.

Round-to-nearest treats every weight alone. But a layer is judged by its outputs on real inputs,
and the squared output error of a row w is (w_q - w) H (w_q - w)^T with H = X^T X / n (the
calibration inputs' second moment, ``Calibration.hessian``). When column i is rounded, the
remaining columns can move to cancel its error, as far as the inputs are correlated (Optimal
Brain Surgeon, applied one column at a time, every row at once):

    err       = (w[:, i] - q[:, i]) / U[i, i]
    w[:, i+1:] -= err ⊗ U[i, i+1:]

where U is the upper Cholesky factor of H^-1: its row i holds, for the columns still to round,
the inverse-Hessian after columns 0..i-1 were fixed. That is the whole algorithm; the rest is
engineering from the paper:

* **dampening**: add ``damp`` x mean(diag H) to the diagonal, so H is safely invertible (channels
  that were always 0 get H_jj = 1 and a zero weight);
* **lazy blocks**: updates within a block of 128 columns are applied at once to the rest of the
  matrix (one matmul per block instead of one outer product per column);
* **act-order** (optional): round the columns with the largest H_jj (most activation energy)
  first, while the most other columns can still compensate;
* the grid: per output channel, from the whole row (dead channels included, as the reference
  has it); or per group, fixed when the sweep reaches the group's first column, from the group's
  values as they stood when the current lazy block began (as the reference does;
  ``gptq_weight``'s ``group_grid`` names the alternatives); with act-order, from the original
  weights (the reference's ``--static-groups``). The grid is a rule the sweep calls (``AffineGrid``,
  coursekit's asymmetric grid); ``gguf_gptq.BlockGrid`` is GGUF's block types in the same place.

With H = identity, U is diagonal and nothing propagates: GPTQ is exactly round-to-nearest.
By default every layer's H comes from one pass of the float model (what the calibration
records). ``sequential=True`` does what the paper does: block by block, each block's H from the
outputs of the blocks before it as already quantized (``sequential.blockwise``).
A group size that does not divide in_features leaves a shorter last group, as in the reference.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .. import checks, quant
from .calibration import Calibration
from .grid import check_weight_args, grid, packed_layer
from .scaling import check_layers, linear_of, replace_linear_in
from .sequential import blockwise

BLOCK = 128
#: Where a group's grid comes from (``gptq_weight``'s ``group_grid``).
GROUP_GRIDS = ("block_start", "updated", "static")


def prepare_hessian(h: torch.Tensor, w: torch.Tensor, damp: float):
    """Dampened H (and w with dead input channels zeroed), and U = chol(H^-1) upper."""
    h = h.double().clone()
    w = w.clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(damp * torch.diagonal(h).mean())
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    return h, w, u


def _check_group_grid(group_grid, group_size, act_order):
    """The grid rule, resolved: None means the reference's ("static" with act-order)."""
    if group_grid is None:
        return "static" if act_order else "block_start"
    group_grid = checks.check_choice(group_grid, "group_grid", GROUP_GRIDS)
    if act_order and group_size is not None and group_grid != "static":
        checks.fail("group_grid", "'static' (or None) with act_order: a group's columns are rounded out of "
                    "order, so its grid must be fixed before the sweep", repr(group_grid))
    return group_grid


@contextmanager
def _one_thread():
    """GPTQ's sweep is a chain of small operations (one column at a time): with more threads each one
    waits for the others to wake up, which made it 10 to 50 times slower on 2 busy cores. It runs on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@torch.no_grad()
def gptq_weight(w: torch.Tensor, h: torch.Tensor, bits: int = 4, group_size: int | None = None,
                damp: float = 0.01, act_order: bool = False, block: int = BLOCK, group_grid: str | None = None):
    """GPTQ of one weight matrix (out, in) with H (in, in).

    ``group_grid`` (with ``group_size``) says where each group's grid comes from, fixed when the
    sweep reaches the group's first column:

    * "block_start" (default without act-order): from the group's columns as they stood when
      the current lazy block began, as the reference ``fasterquant`` (IST-DASLab) and GPTQModel
      do; with a group that starts inside a block the block's own updates (the reference keeps
      them in ``W1``) are not in it yet. The codes equal the ecosystem's.
    * "updated": from the columns as updated so far, this block's updates included. Measured at
      4 bits, block 128: on the course LM's layers 18 % of the codes differ from "block_start"
      at g64 and 21 % at g32 (26 % and 31 % on random correlated 256 x 512 layers), while the
      summed output error moves by at most 1.6 %, one way at g32 and the other at g64: neither
      rule wins. With groups of 128 (groups = blocks) the two are identical.
    * "static": from the original weights, before the sweep (the reference's ``--static-groups``).
      The only rule with ``act_order``: act-order with groups here *is* the reference's
      ``--act-order --static-groups`` (each group's grid by original column index, so the stored
      layer needs no permutation).

    Returns (codes, scale, zero): signed codes (out, in) and the grid (out, n_groups), in the
    original column order.
    """
    checks.check_tensor(w, "w", floating=True, ndim=2)
    checks.check_tensor(h, "h", floating=True, ndim=2)
    if h.shape != (w.shape[1], w.shape[1]):
        checks.fail("h", f"a ({w.shape[1]}, {w.shape[1]}) matrix (in_features squared)", f"shape {tuple(h.shape)}")
    bits, group_size = check_weight_args(bits, group_size)
    damp = checks.check_number(damp, "damp", 0.0, 1.0)
    block = checks.check_int(block, "block", low=1)
    checks.check_instance(act_order, "act_order", bool, "True or False")
    group_grid = _check_group_grid(group_grid, group_size, act_order)
    return _gptq_weight(w, h, bits, group_size, damp, act_order, block, group_grid)


class AffineGrid:
    """The sweep's default grid: coursekit's asymmetric ``bits``-bit grid (scale, zero point) of a row
    or group. A grid rule has two methods: ``fit`` (a group's values -> its parameters, one tensor per
    parameter, one value per row) and ``round`` (a column onto them -> its codes and their values).
    ``coursekit.ptq.gguf_gptq`` plugs llama.cpp's block types in the same way."""

    def __init__(self, bits: int):
        self.bits = bits
        self.qmin, self.qmax = quant.qrange(bits, check=False)

    def fit(self, values: torch.Tensor):
        scale, zero = grid(values, self.bits, None)
        return scale[:, 0], zero[:, 0]

    def round(self, w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
        # quant.linear_quantize and linear_dequantize, written out: this runs once per input column
        # of every layer, and the calls and casts were a third of the sweep's time
        q = torch.round(w / scale).add_(zero).clamp_(self.qmin, self.qmax)
        return q, (q - zero) * scale


def _gptq_weight(w, h, bits, group_size, damp, act_order, block, group_grid, rule=None):
    original = w
    rule = rule or AffineGrid(bits)
    h, w, u = prepare_hessian(h, w.double(), damp)
    perm = torch.argsort(torch.diagonal(h), descending=True) if act_order else torch.arange(w.shape[1])
    if act_order:
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h[perm][:, perm])), upper=True)
    gs = group_size or w.shape[1]
    n_groups = -(-w.shape[1] // gs)
    if group_size is None:                           # as the reference: dead columns not yet zeroed
        params = [p.unsqueeze(0) for p in rule.fit(original.float())]
    elif group_grid == "static":
        params = [torch.stack(p) for p in zip(*(rule.fit(c) for c in w.float().split(gs, dim=1)))]
    else:                                            # filled in as the sweep reaches each group
        params = [torch.ones(n_groups, w.shape[0]) for _ in rule.fit(w[:1, :gs].float())]
    # the sweep runs in float32 on W transposed, so that "column i" is a contiguous row
    wt = w[:, perm].T.float().contiguous()
    sweep = group_grid if group_size is not None and group_grid != "static" else None
    with _one_thread():   # the Cholesky factorizations above are large enough to use every thread
        codes = _sweep(wt, u.float(), perm, params, rule, gs, block, sweep)
    return (codes.T[:, torch.argsort(perm)], *(p.T.float() for p in params))


def _sweep(wt, u, perm, params, rule, gs, block, group_grid):
    """The column loop on W^T (in place): codes in sweep order. ``params`` (the grid's, each
    (n_groups, out)) are read, and written where ``group_grid`` ("block_start" or "updated") sets a
    group's grid."""
    n_in = wt.shape[0]
    diag = torch.diagonal(u).tolist()
    codes = torch.zeros_like(wt, dtype=torch.int8)
    for b0 in range(0, n_in, block):
        b1 = min(b0 + block, n_in)
        start = wt[b0:b1].clone() if group_grid == "block_start" else None   # the reference's W[:, i1:i2]
        errs = torch.zeros(b1 - b0, wt.shape[1])
        for i, col in zip(range(b0, b1), perm[b0:b1].tolist()):
            g = col // gs                            # the group of this column, by original index
            if group_grid is not None and col % gs == 0:
                cols = wt[i:i + gs] if start is None else torch.cat([start[i - b0:], wt[b1:i + gs]])[:gs]
                for p, value in zip(params, rule.fit(cols.T)):
                    p[g] = value
            w_i = wt[i]
            q, value = rule.round(w_i, *(p[g] for p in params))
            codes[i] = q
            err = (w_i - value).div_(diag[i])
            wt[i + 1:b1].addr_(u[i, i + 1:b1], err, alpha=-1.0)   # the others absorb the error
            errs[i - b0] = err
        wt[b1:] -= u[b0:b1, b1:].T @ errs           # the lazy update: the block's errors at once
    return codes


@torch.no_grad()
def gptq(model: nn.Module, calibration: Calibration, bits: int = 4, group_size: int | None = None,
         damp: float = 0.01, act_order: bool = False, group_grid: str | None = None,
         sequential: bool = False) -> nn.Module:
    """GPTQ every calibrated linear of ``model`` in place, into PackedLinear layers; returns model.

    ``group_size=None``: one grid per output channel; ``damp``: the fraction of mean(diag H) added
    to the diagonal; ``act_order``: round high-activation columns first; ``group_grid``: where a
    group's grid comes from (see ``gptq_weight``; the default is the reference's);
    ``sequential``: calibrate each transformer block on the quantized blocks' outputs, as the
    paper does (runs the calibration texts again, block by block). Every layer's arguments are
    checked before any layer changes.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    checks.check_instance(act_order, "act_order", bool, "True or False")
    checks.check_instance(sequential, "sequential", bool, "True or False")
    damp = checks.check_number(damp, "damp", 0.0, 1.0)
    bits, group_size = check_layers(model, calibration.names, bits, group_size)
    group_grid = _check_group_grid(group_grid, group_size, act_order)

    def quantize_layers(names, stats):
        # Layers that read the same input (query/key/value, gate/up) share H, and GPTQ treats every
        # output row alone: their stacked rows go through one sweep, the same codes in fewer steps.
        wanted = set(names)
        for group in [[n for n in g if n in wanted] for g in calibration.groups]:
            if not group:
                continue
            weights = [linear_of(model, n).weight.detach().float() for n in group]
            codes, scale, zero = gptq_weight(torch.cat(weights), stats[group[0]].hessian(), bits, group_size,
                                             damp, act_order, group_grid=group_grid)
            rows = [w.shape[0] for w in weights]
            for name, c, s, z in zip(group, codes.split(rows), scale.split(rows), zero.split(rows)):
                replace_linear_in(model, [name], lambda linear, c=c, s=s, z=z:
                                  packed_layer(c.clone(), s.clone(), z.clone(), bits, group_size, linear.bias))

    if sequential:
        for names, stats in blockwise(model, calibration):
            quantize_layers(names, stats)
    else:
        quantize_layers(calibration.names, calibration.stats)
    return model
