"""The network training's fast path gives the same bytes as the plain loop it replaced (torch.optim.AdamW,
one index per batch, the loss computed per batch)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from causal_router.policy.losses import rm_classification_loss, rm_softmax_loss
from causal_router.policy.network import MLP, AdamW, _batch_bounds, train_network

pytestmark = pytest.mark.usefixtures("one_thread")  # as the routers train (policy.training)


def _flat(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_adamw_matches_torch_step_by_step():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    extra = torch.nn.Linear(7, 3)  # gets a gradient only on some steps: its own step count
    b, extra_b = copy.deepcopy(a), copy.deepcopy(extra)
    ours = AdamW([*a.parameters(), *extra.parameters()], lr=3e-3, weight_decay=1e-2)
    ref = torch.optim.AdamW([*b.parameters(), *extra_b.parameters()], lr=3e-3, weight_decay=1e-2)
    rng = np.random.default_rng(0)
    for i in range(60):
        x = torch.as_tensor(rng.normal(size=(16, 7)), dtype=torch.float32)
        for net, head, opt in ((a, extra, ours), (b, extra_b, ref)):
            out = net(x).pow(2).mean() + (head(x).abs().mean() if i % 3 == 0 else 0.0)
            opt.zero_grad()
            out.backward()
            opt.step()
        assert torch.equal(_flat(a), _flat(b)) and torch.equal(_flat(extra), _flat(extra_b)), i


@pytest.mark.parametrize("n,batch", [(1890, 128), (100, 128), (257, 32)])
def test_batch_bounds_are_array_split(n, batch):
    parts = np.array_split(np.arange(n), max(1, n // batch))
    assert [(int(p[0]), int(p[-1]) + 1) for p in parts] == _batch_bounds(n, batch)


def _plain(X, G, loss, tau, offset, epochs=6, seed=0):
    """The loop as it was: torch.optim.AdamW, the rows indexed per batch, the loss on the batch."""
    torch.manual_seed(seed)
    net = MLP(X.shape[1], G.shape[1]).zero_output()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, K = G.shape
    Xt, Gt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(G / float(G.std()), dtype=torch.float32)
    Ot = torch.as_tensor(offset, dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        net.train()
        for idx in np.array_split(rng.permutation(n), max(1, n // 32)):
            s = net(Xt[idx]) + Ot[idx]
            lval = rm_softmax_loss(s, Gt[idx], tau) if loss == "softmax" else rm_classification_loss(s, Gt[idx])
            opt.zero_grad()
            lval.backward()
            opt.step()
    return net


@pytest.mark.parametrize("loss", ["softmax", "classification"])
def test_train_network_matches_the_plain_loop(loss):
    rng = np.random.default_rng(1)
    X, G, off = rng.normal(size=(300, 12)), rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    ref = _plain(X, G, loss, 10.0, off)
    torch.manual_seed(0)
    net = MLP(12, 4).zero_output()
    res = train_network(X, G, loss=loss, tau=10.0, epochs=6, batch_size=32, seed=0, net=net, offset=off)
    assert torch.equal(_flat(res.net), _flat(ref))
