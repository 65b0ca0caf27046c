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
* the grid: per output channel (from the whole row) or per group (from the group's current
  values, fixed when the sweep reaches its first column; static, from the original weights, with
  act-order).

With H = identity, U is diagonal and nothing propagates: GPTQ is exactly round-to-nearest.
The paper quantizes block by block, feeding each block the already quantized ones' outputs; here
every layer's H comes from one pass of the float model (what the calibration records), which
keeps the whole model at seconds on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from .calibration import Calibration
from .grid import check_weight_args, expand, grid, packed_layer, round_to_grid
from .scaling import linear_of, replace_linear_in

BLOCK = 128


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


@torch.no_grad()
def gptq_weight(w: torch.Tensor, h: torch.Tensor, bits: int = 4, group_size: int | None = None,
                damp: float = 0.01, act_order: bool = False, block: int = BLOCK):
    """GPTQ of one weight matrix (out, in) with H (in, in).

    Returns (codes, scale, zero): signed codes (out, in) and the grid (out, n_groups), in the
    original column order.
    """
    checks.check_tensor(w, "w", floating=True, ndim=2)
    checks.check_tensor(h, "h", floating=True, ndim=2)
    if h.shape != (w.shape[1], w.shape[1]):
        checks.fail("h", f"a ({w.shape[1]}, {w.shape[1]}) matrix (in_features squared)", f"shape {tuple(h.shape)}")
    bits, group_size = check_weight_args(bits, group_size, w.shape[1])
    damp = checks.check_number(damp, "damp", 0.0, 1.0)
    block = checks.check_int(block, "block", low=1)
    n_in = w.shape[1]
    h, w, u = prepare_hessian(h, w.double(), damp)
    perm = torch.argsort(torch.diagonal(h), descending=True) if act_order else torch.arange(n_in)
    if act_order:
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h[perm][:, perm])), upper=True)
    if group_size is None or act_order:              # the grid is fixed before the sweep
        scale, zero = grid(w.float(), bits, group_size)
    else:                                            # filled in as the sweep reaches each group
        scale = torch.ones(w.shape[0], n_in // group_size)
        zero = torch.zeros(w.shape[0], n_in // group_size)
    # the sweep runs in float32 on W transposed, so that "column i" is a contiguous row
    wt, u = w[:, perm].T.float().contiguous(), u.float()
    st, zt = scale.T.contiguous(), zero.T.contiguous()
    diag = torch.diagonal(u).tolist()
    gs = n_in if group_size is None else group_size
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = torch.zeros_like(wt)
    for b0 in range(0, n_in, block):
        b1 = min(b0 + block, n_in)
        errs = torch.zeros(b1 - b0, wt.shape[1])
        for i, col in zip(range(b0, b1), perm[b0:b1].tolist()):
            g = col // gs                            # the group of this column, by original index
            if not act_order and group_size is not None and col % gs == 0:
                sg, zg = grid(wt[i:i + gs].T, bits, None)
                st[g], zt[g] = sg[:, 0], zg[:, 0]
            q = torch.clamp(torch.round(wt[i] / st[g]) + zt[g], qmin, qmax)
            codes[i] = q
            err = (wt[i] - (q - zt[g]) * st[g]) / diag[i]
            wt[i + 1:b1].addr_(u[i, i + 1:b1], err, alpha=-1.0)   # the others absorb the error
            errs[i - b0] = err
        wt[b1:] -= u[b0:b1, b1:].T @ errs           # the lazy update: the block's errors at once
    codes = codes.T[:, torch.argsort(perm)]
    scale, zero = st.T, zt.T
    return codes, scale.float(), zero.float()


@torch.no_grad()
def gptq(model: nn.Module, calibration: Calibration, bits: int = 4, group_size: int | None = None,
         damp: float = 0.01, act_order: bool = False) -> nn.Module:
    """GPTQ every calibrated linear of ``model`` in place, into PackedLinear layers; returns model.

    ``group_size=None``: one grid per output channel; ``damp``: the fraction of mean(diag H) added
    to the diagonal; ``act_order``: round high-activation columns first.
    """
    checks.check_instance(model, "model", nn.Module, "a torch.nn.Module")
    checks.check_instance(calibration, "calibration", Calibration, "a Calibration (from ptq.calibrate)")
    bits, group_size = check_weight_args(bits, group_size)
    checks.check_instance(act_order, "act_order", bool, "True or False")

    def make(name):
        def quantize(linear):
            codes, scale, zero = gptq_weight(linear.weight.detach().float(), calibration.hessian(name),
                                             bits, group_size, damp, act_order)
            return packed_layer(codes, scale, zero, bits, group_size, linear.bias)
        return quantize

    for name in calibration.names:
        linear_of(model, name)                       # every calibrated layer must still be there
        replace_linear_in(model, [name], make(name))
    return model
