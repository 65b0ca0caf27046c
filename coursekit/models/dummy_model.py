"""``DummyModel``: the four-layer toy of the casting lesson (notebook 02).

A cast to fp16 or bf16 changes every parameter, and each layer kind feels it differently (an
embedding only looks rows up, a LayerNorm divides by a variance it computes). The toy has one
layer of each common kind and nothing else: small enough to print whole, and seeded, so every
learner sees the same weights on every machine.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_int

__all__ = ["DummyModel"]


class DummyModel(nn.Module):
    """Embedding -> Linear -> LayerNorm -> head: one of each layer kind a cast has to handle.

    Initialised from its own ``seed`` (the global RNG is left alone), so every learner sees the
    same weights and the same logits.
    """

    def __init__(self, vocab_size: int = 64, hidden: int = 32, seed: int = 0):
        super().__init__()
        vocab_size = check_int(vocab_size, "vocab_size", low=1)
        hidden = check_int(hidden, "hidden", low=1)
        seed = check_int(seed, "seed")
        self.token_embedding = nn.Embedding(vocab_size, hidden)
        self.linear = nn.Linear(hidden, hidden)
        self.layernorm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size, bias=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            self.layernorm.weight.fill_(1.0)
            self.layernorm.bias.zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(input_ids)
        x = torch.relu(self.linear(x))
        return self.head(self.layernorm(x))
