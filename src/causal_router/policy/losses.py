"""Regret-minimisation losses on counterfactual utilities ``G`` of shape (n, K)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rm_softmax_loss(scores: torch.Tensor, G: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """``mean_i sum_t softmax(f(x_i)/tau)_t (max_s G_i(s) - G_i(t))``.

    scores : (n, K); G : (n, K). Differentiable surrogate of the regret that recovers the
    optimal policy at convergence.
    """
    return regret_softmax_loss(scores, regret_of(G), tau)


def regret_of(G: torch.Tensor) -> torch.Tensor:
    """Each row's regret ``max_s G_i(s) - G_i(t)`` (n, K) of utilities G (n, K): row by row, so computing it
    once for all rows and taking batches of it gives the same values as computing it per batch."""
    return G.max(dim=1, keepdim=True).values - G


def regret_softmax_loss(scores: torch.Tensor, regret: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """:func:`rm_softmax_loss` from the rows' regrets (:func:`regret_of`). scores, regret: (n, K)."""
    p = torch.softmax(scores / tau, dim=1)
    return (p * regret).sum(dim=1).mean()


def rm_classification_loss(scores: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Cross-entropy towards ``argmax_t G_i(t)`` (an upper bound on the regret). scores, G: (n, K)."""
    return F.cross_entropy(scores, G.argmax(dim=1))
