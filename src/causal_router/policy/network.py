"""Scoring networks ``f(x) -> R^K``."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Two-layer perceptron with dropout; ``bias_init`` (K,) starts the network at a constant policy."""

    def __init__(self, d_in: int, n_arms: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_arms)
        )

    def zero_output(self) -> "MLP":
        """Start at the zero function, so that an offset policy is exactly the starting policy."""
        last = self.net[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
