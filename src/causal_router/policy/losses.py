"""Regret-minimisation losses on counterfactual utilities ``G`` of shape (n, K)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rm_softmax_loss(scores: torch.Tensor, G: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """``mean_i sum_t softmax(f(x_i)/tau)_t (max_s G_i(s) - G_i(t))``.

    scores : (n, K); G : (n, K). Differentiable surrogate of the regret that recovers the
    optimal policy at convergence.
    """
    p = torch.softmax(scores / tau, dim=1)
    regret = G.max(dim=1, keepdim=True).values - G
    return (p * regret).sum(dim=1).mean()


def rm_classification_loss(scores: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Cross-entropy towards ``argmax_t G_i(t)`` (an upper bound on the regret). scores, G: (n, K)."""
    return F.cross_entropy(scores, G.argmax(dim=1))
