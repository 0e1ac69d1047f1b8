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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
