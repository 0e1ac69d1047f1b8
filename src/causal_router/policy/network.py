"""Scoring networks ``f(x) -> R^K`` and their training on counterfactual utilities, with early
stopping by DR value."""

from __future__ import annotations

import copy
import functools
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .losses import regret_of, regret_softmax_loss

#: torch's random generator is process-wide: seeded fits running in concurrent threads (the train flow's
#: endpoint tasks) would draw from it interleaved and differ from run to run, so a seeded fit holds this
#: lock from its seed to its last draw.
TORCH_RNG_LOCK = threading.RLock()


def seeded(fit):
    """Run ``fit`` holding :data:`TORCH_RNG_LOCK` (re-entrant: seeded fits may nest)."""

    @functools.wraps(fit)
    def wrapper(*args, **kwargs):
        with TORCH_RNG_LOCK:
            return fit(*args, **kwargs)

    return wrapper


class MLP(nn.Module):
    """Two-layer perceptron with dropout; ``bias_init`` (K,) starts the network at a constant policy."""

    def __init__(self, d_in: int, n_arms: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_arms)
        )

    def zero_output(self) -> MLP:
        """Start at the zero function, so that an offset policy is exactly the starting policy."""
        last = self.net[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


LOSSES = ("softmax", "classification")


class AdamW:
    """``torch.optim.AdamW``'s update (betas 0.9, 0.999, eps 1e-8; no amsgrad, maximize or capturable) in a
    few ``torch._foreach`` calls: the same operations in the same order, so the same bytes on CPU
    (tests/policy/test_network.py compares them step by step), at a fraction of the per-step Python
    overhead that dominates these small networks' training (``benchmarks/train_speed.py``). Parameters
    without a gradient are skipped and keep their own step count, as torch's are."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, float(eps)
        self.exp_avg = [torch.zeros_like(q, memory_format=torch.preserve_format) for q in self.params]
        self.exp_avg_sq = [torch.zeros_like(q, memory_format=torch.preserve_format) for q in self.params]
        self.steps = [0] * len(self.params)

    def zero_grad(self) -> None:
        for q in self.params:
            q.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, q in enumerate(self.params) if q.grad is not None]
        for i in live:
            self.steps[i] += 1
        for step in sorted({self.steps[i] for i in live}):  # one group when every parameter has a gradient
            group = [i for i in live if self.steps[i] == step]
            self._update([self.params[i] for i in group], [self.params[i].grad for i in group],
                         [self.exp_avg[i] for i in group], [self.exp_avg_sq[i] for i in group], float(step))

    def _update(self, params, grads, exp_avg, exp_avg_sq, step: float) -> None:
        (beta1, beta2), lr = self.betas, self.lr
        torch._foreach_mul_(params, 1 - lr * self.weight_decay)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, (1 - beta2 ** step) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, -(lr / (1 - beta1 ** step)))


def _loss_target(G: torch.Tensor, loss: str) -> torch.Tensor:
    """What a batch's loss reads of its rows, computed once for all rows: the regrets (softmax) or the best
    arm's index (classification); row by row, so a batch of it equals it computed on the batch."""
    return regret_of(G) if loss == "softmax" else G.argmax(dim=1)


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of the batches ``np.array_split`` cuts a permutation of n rows into."""
    sizes = [len(part) for part in np.array_split(np.empty(n, dtype=np.int8), max(1, n // batch_size))]
    stops = np.cumsum(sizes).tolist()
    return list(zip([0] + stops[:-1], stops))


@dataclass
class TrainResult:
    """A trained network, its validation DR value (of the argmax policy) and the value history."""

    net: MLP
    val_value: float
    best_epoch: int
    history: list = field(default_factory=list)


def dr_value(scores: np.ndarray, G: np.ndarray) -> float:
    """DR value of the argmax policy: scores (n, K), G (n, K) pseudo-utilities."""
    return float(G[np.arange(len(G)), scores.argmax(1)].mean())


def net_scores(net: MLP, X: np.ndarray) -> np.ndarray:
    """Scores (n, K) of a network on features X (n, d)."""
    net.eval()
    with torch.inference_mode():
        return net(torch.as_tensor(X, dtype=torch.float32)).numpy()


@seeded
def train_network(X, G, X_val=None, G_val=None, *, loss: str = "softmax", tau: float = 1.0,
                  hidden: int = 128, dropout: float = 0.1, weight_decay: float = 1e-4, lr: float = 1e-3,
                  epochs: int = 100, batch_size: int = 128, eval_every: int = 5, seed: int = 0,
                  net: MLP | None = None, offset=None, offset_val=None) -> TrainResult:
    """Fit ``f(x) -> R^K`` to pseudo-utilities with an RM loss.

    Parameters
    ----------
    X : ndarray (n, d)
    G : ndarray (n, K)
        Training pseudo-utilities at one lambda (scaled internally to unit standard deviation).
    X_val, G_val : ndarray (m, d), (m, K) or None
        Validation logs' features and DR pseudo-utilities; the epoch with the best DR value of the
        argmax policy is kept (early stopping). Without them, the last epoch is kept.
    loss : {"softmax", "classification"}
    tau : float
        Softmax temperature (RM-Softmax only).
    net : MLP or None
        Start from this network (fine-tuning) instead of a fresh one.
    offset, offset_val : ndarray (n, K), (m, K) or None
        Fixed scores added to the network's (a starting policy the network learns to correct).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, K = G.shape
    scale = float(G.std()) or 1.0
    Xt = torch.as_tensor(X, dtype=torch.float32)
    Tt = _loss_target(torch.as_tensor(G / scale, dtype=torch.float32), loss)
    Ot = torch.as_tensor(offset if offset is not None else np.zeros((n, K)), dtype=torch.float32)
    val_scores = lambda: net_scores(net, X_val) + (0.0 if offset_val is None else offset_val)  # noqa: E731
    net = net if net is not None else MLP(X.shape[1], K, hidden, dropout)
    opt = AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_epoch, best_state, history = -np.inf, 0, copy.deepcopy(net.state_dict()), []
    if X_val is not None:
        best = dr_value(val_scores(), G_val)
        history.append((0, best))
    bounds = _batch_bounds(n, batch_size)
    for epoch in range(1, epochs + 1):
        net.train()
        # the epoch's rows in its shuffled order, gathered once: batch b is rows bounds[b] of it
        perm = torch.from_numpy(rng.permutation(n))
        Xp, Tp, Op = Xt[perm], Tt[perm], Ot[perm]
        for a, b in bounds:
            s = net(Xp[a:b]) + Op[a:b]
            t = Tp[a:b]
            lval = regret_softmax_loss(s, t, tau) if loss == "softmax" else nn.functional.cross_entropy(s, t)
            opt.zero_grad()
            lval.backward()
            opt.step()
        if X_val is not None and (epoch % eval_every == 0 or epoch == epochs):
            v = dr_value(val_scores(), G_val)
            history.append((epoch, v))
            if v > best:
                best, best_epoch, best_state = v, epoch, copy.deepcopy(net.state_dict())
    if X_val is None:
        best_epoch, best_state = epochs, net.state_dict()
    net.load_state_dict(best_state)
    net.eval()
    return TrainResult(net, float(best), best_epoch, history)
