"""The MetaNet of CoCoOp / AutoRad: a small MLP that turns a conditioning vector into a context shift."""

from __future__ import annotations

import torch
from torch import nn

MIN_HIDDEN = 8


def default_hidden(input_dim: int) -> int:
    """CoCoOp's width, input_dim // 16, but at least MIN_HIDDEN (a radiomics vector of ~100 features would
    otherwise get a 6-unit bottleneck)."""
    return max(input_dim // 16, MIN_HIDDEN)


class MetaNet(nn.Module):
    """Linear -> ReLU -> Linear: (B, input_dim) -> (B, output_dim), the delta added to every context vector."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or default_hidden(input_dim)
        self.linear1 = nn.Linear(input_dim, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Linear(hidden, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(x)))
