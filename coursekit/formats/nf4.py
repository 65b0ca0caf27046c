"""NF4, QLoRA's 4-bit NormalFloat: 16 levels at the quantiles of a normal distribution.

Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs" (2023), section 3: trained weights
are roughly normal, so a 4-bit grid should put equally many weights into each of its 16 bins:
place the levels at quantiles of N(0, 1), then rescale them into [-1, 1]. A symmetric set of
quantiles would have no exact zero, so the paper builds the two halves separately: 8 levels for
the positive side and 7 for the negative side, each from quantiles of the probabilities between
0.5 and an ``offset`` near 1, and adds 0 itself. The offset, (1 - 1/(2*15) + 1 - 1/(2*16))/2 =
0.96770833..., written 0.9677083 as in the paper's code, keeps the outermost quantile finite. With
the probabilities in float32 (as there) and the quantiles in float64, the result is the published
table of the paper's appendix E, bit for bit in float32.

A weight block of 64 is scaled by its absolute maximum (kept in float32), each scaled value gets
the code of the nearest level, and dequantization is ``level[code] * absmax``.
"""

from __future__ import annotations

import torch

from .scales import reciprocal

__all__ = ["NF4_OFFSET", "nf4_levels", "encode_blocks", "decode_blocks"]

NF4_OFFSET = 0.9677083     # 0.5 * ((1 - 1 / (2 * 15)) + (1 - 1 / (2 * 16))), to 7 digits


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels, float32, ascending from -1 to 1 (code i is level i)."""
    normal_quantile = torch.special.ndtri                      # the inverse of the normal CDF
    # Probabilities from the offset down towards 0.5 (0.5 itself would give the level 0 twice).
    positive = normal_quantile(torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double())
    negative = -normal_quantile(torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double())
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values.float()
    return levels / levels.max()


def _midpoints() -> torch.Tensor:
    levels = nf4_levels()
    return (levels[:-1] + levels[1:]) / 2


def encode_blocks(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes uint8, absmax float32) of a (n_blocks, block_len) float tensor.

    A value exactly halfway between two levels takes the lower one. The scaled value is x times
    the reciprocal of absmax, as bitsandbytes computes it, so codes agree with it bit for bit.
    """
    blocks = blocks.float()
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * reciprocal(absmax).unsqueeze(1)).clamp(-1, 1)
    codes = torch.bucketize(scaled, _midpoints())              # ties: the lower bucket
    return codes.to(torch.uint8), absmax


def decode_blocks(codes: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    return nf4_levels()[codes.long()] * absmax.unsqueeze(1)
