"""The regret-minimising routers: RM-Softmax and RM-Classification (one head per lambda of the grid)
and the interval router that interpolates them (docs/architecture.md, Method steps 3 and 4)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..causal.scores import Utilities
from ..causal.selection import DEFAULT_PESSIMISM, select_policy
from .data import RoutingData
from .losses import rm_softmax_loss
from .network import MLP, net_scores, seeded, train_network
from .routers import BestSingleRouter, DRRegressRouter, Router, onehot


def _select(G_val: np.ndarray, learned: np.ndarray, fallback: int, margin: float) -> bool:
    """Keep the learned policy only if its paired DR gain over ``fallback`` on validation logs
    exceeds ``margin`` standard errors. learned: (m,) actions; G_val: (m, K)."""
    rows = np.arange(len(G_val))
    d = G_val[rows, learned] - G_val[:, fallback]
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
    return bool(d.mean() - margin * se > 0)


class _EndpointRouter(Router):
    """One head per lambda of the grid; lambdas off the grid use the nearest grid point.

    A head scores ``offset(x) + g(x)``: a fixed starting policy's scores plus a network ``g``
    that starts at zero. Starts: the direct method's predicted utility ("dm", i.e. the naive
    router), the logging policy's log-propensity ("logging", an imitation of the logger), both
    ("auto": the better on validation is kept) or none ("random": a plain network). RM training
    corrects a start only as far as the validation DR value supports (early stopping keeps
    ``g = 0`` otherwise).

    Each head is then chosen per lambda (``select="pessimistic"``, the default) among the trained
    network, the direct-method policy (the naive router, the trusted default), the logging
    policy's mode, the best single model and DR regress-and-compare: the default is left only for a
    candidate whose improvement over it on the validation logs has a positive lower bound
    (estimate minus ``pessimism`` standard errors, default two, the standard error counting the logged
    rows of each arm the candidate switches to; :func:`causal_router.causal.selection.select_policy`).
    ``select="best-single"`` is the earlier rule: the head falls back to the best single model
    unless a held-back part of the validation logs confirms the gain by ``margin`` standard errors.
    """

    loss = "softmax"
    STARTS = {"auto": ("dm", "logging"), "dm": ("dm",), "logging": ("logging",), "random": (None,)}

    def __init__(self, tau: float = 10.0, hidden: int = 128, dropout: float = 0.1, weight_decay: float = 1e-4,
                 lr: float = 1e-3, epochs: int = 40, batch_size: int = 128, margin: float = 0.0,
                 init: str = "auto", holdout: float = 0.0, select: str = "pessimistic",
                 pessimism: float = DEFAULT_PESSIMISM, random_state: int = 0):
        self.tau = tau
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.margin = margin
        self.init = init
        self.holdout = holdout
        self.select = select
        self.pessimism = pessimism
        self.random_state = random_state

    # -- starting policies -------------------------------------------------------------------
    def _offset(self, start, lam: float, X, input_tokens=None) -> np.ndarray:
        """Scores (n, K) of a starting policy: (kind, scale) or None."""
        if start is None:
            return np.zeros((len(X), self.n_arms_))
        kind, scale = start
        nu = self.nuisance_
        if kind == "dm":
            return (nu["quality"].predict(X, input_tokens) - lam * nu["cost"].predict(X, input_tokens)) * scale
        return np.log(np.maximum(nu["propensity"].predict_proba(X), 1e-4))

    def _start_kinds(self, data: RoutingData, lam: float) -> list:
        if self.init not in self.STARTS:
            raise ValueError(f"init must be one of {sorted(self.STARTS)}, got {self.init!r}")
        if data.crossfitter is None:
            return [None]
        out = []
        for kind in self.STARTS[self.init]:
            if kind == "dm":
                nu = data.crossfitter.nuisances_
                # standardised utilities: the softmax starts neither flat nor saturated
                out.append(("dm", 1.0 / (float(np.std(nu.quality - lam * nu.cost)) or 1.0)))
            else:
                out.append((kind, 1.0) if kind else None)
        return out

    def _train(self, data: RoutingData, lam: float, epochs=None):
        G = data.utilities.at(lam)
        G_val = data.val_utilities.at(lam) if data.val_utilities is not None else None
        best = None
        for start in self._start_kinds(data, lam):
            torch.manual_seed(self.random_state)  # the same head whether fitted alone or with others
            net = MLP(data.X.shape[1], data.n_arms, self.hidden, self.dropout)
            if start is not None:
                net.zero_output()
            res = train_network(
                data.X, G, data.X_val, G_val, loss=self.loss, tau=self.tau, hidden=self.hidden,
                dropout=self.dropout, weight_decay=self.weight_decay, lr=self.lr,
                epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size,
                seed=self.random_state, net=net,
                offset=self._offset(start, lam, data.X, data.input_tokens),
                offset_val=None if data.X_val is None else self._offset(start, lam, data.X_val, data.val_input_tokens),
            )
            if best is None or res.val_value > best[0].val_value:
                best = (res, start)
        return best

    def _split_validation(self, data: RoutingData):
        """(data whose validation logs are the early-stopping part, the held-back part's
        (X, Utilities, input_tokens, LoggedEvidence or None)).

        Early stopping and the choice of start take the best of many noisy DR values; judging
        the winner against the best single model on the same rows would favour it (winner's curse).
        """
        if data.X_val is None or self.holdout <= 0:
            return data, (data.X_val, data.val_utilities, data.val_input_tokens, data.val_evidence)
        from dataclasses import replace

        m = len(data.X_val)
        perm = np.random.default_rng(self.random_state).permutation(m)
        a, b = np.sort(perm[int(m * self.holdout):]), np.sort(perm[:int(m * self.holdout)])
        U, tok = data.val_utilities, data.val_input_tokens
        sub = lambda idx: Utilities(U.quality[idx], U.cost[idx])  # noqa: E731
        pick = lambda idx: None if tok is None else tok[idx]  # noqa: E731
        ev = lambda idx: None if data.val_evidence is None else data.val_evidence.subset(idx)  # noqa: E731
        return (replace(data, X_val=data.X_val[a], val_utilities=sub(a), val_input_tokens=pick(a), val_evidence=ev(a)),
                (data.X_val[b], sub(b), pick(b), ev(b)))

    SELECT = ("pessimistic", "best-single")

    @seeded
    def fit(self, data: RoutingData, lambdas):
        if self.select not in self.SELECT:
            raise ValueError(f"select must be one of {self.SELECT}, got {self.select!r}")
        self._fitted_on(data)
        self.lambdas_ = np.array(sorted(float(x) for x in lambdas))
        cf = self.attach(data)
        best = BestSingleRouter().fit(data, lambdas)
        self.regress_ = DRRegressRouter().fit(data, lambdas) if cf is not None else None
        self.nets_, self.starts_, self.fallback_, self.val_values_, self.selection_ = [], [], [], [], []
        stop_data, (X_check, U_check, tok_check, ev_check) = self._split_validation(data)
        pessimistic = self.select == "pessimistic" and X_check is not None and ev_check is not None and cf is not None
        for lam in self.lambdas_:
            res, start = self._train(stop_data, lam)
            self.nets_.append(res.net)
            self.starts_.append(start)
            self.fallback_.append(None)
            self.val_values_.append(res.val_value)
            k = len(self.nets_) - 1
            arm = int(best._arm_scores(lam).argmax())
            self.selection_.append({})
            if pessimistic:
                # the best single arm on the training logs alone: the validation rows judge it unbiasedly
                arm_train = int((data.utilities.quality.mean(0) - lam * data.utilities.cost.mean(0)).argmax())
                self.fallback_[k], self.selection_[k] = self._choose(k, arm_train, X_check, tok_check, ev_check)
            elif X_check is not None:
                learned = self._head_scores(k, X_check, tok_check).argmax(1)
                if not _select(U_check.at(lam), learned, arm, self.margin):
                    self.fallback_[k] = arm
        return self

    def attach(self, data: RoutingData):
        """Point the router at ``data``'s fitted nuisance models and arm posterior (shared, not copied: a
        head fitted in another process gets this process's objects back); returns the cross-fitter."""
        cf = data.crossfitter
        self.nuisance_ = None if cf is None else {
            "quality": cf.quality_model_, "cost": cf.cost_model_, "propensity": cf.propensity_model_}
        self.arm_posterior_ = data.arm_posterior
        return cf

    def _choose(self, k: int, arm: int, X, tok, evidence):
        """Head ``k``'s policy by the lower bound of its improvement over the direct method:
        (fallback_ entry, {candidate: (estimate, se)})."""
        lam = self.lambdas_[k]
        self.fallback_[k] = None
        cands = {"network": self._head_scores(k, X, tok).argmax(1)}
        for kind in ("dm", "logging", "dr-regress", arm):
            self.fallback_[k] = kind
            cands[kind] = self._head_scores(k, X, tok).argmax(1)
        self.fallback_[k] = None
        name, bounds = select_policy(cands, "dm", evidence, lam, pessimism=self.pessimism)
        return (None if name == "network" else name), {str(c): v for c, v in bounds.items()}

    @classmethod
    def merge(cls, parts: list) -> _EndpointRouter:
        """One router from routers of the same class and parameters fitted on parts of the grid
        (the fan-out over lambdas); equal to fitting on the whole grid at once."""
        out = cls(**parts[0].get_params())
        pairs = sorted((lam, i, k) for i, r in enumerate(parts) for k, lam in enumerate(r.lambdas_))
        out.n_arms_, out.nuisance_ = parts[0].n_arms_, parts[0].nuisance_
        out.arm_posterior_ = getattr(parts[0], "arm_posterior_", None)  # Thompson exploration needs it
        out.n_features_in_ = parts[0].n_features_in_
        out.lambdas_ = np.array([lam for lam, _, _ in pairs])
        out.regress_ = getattr(parts[0], "regress_", None)
        for attr in ("nets_", "starts_", "fallback_", "val_values_", "selection_"):
            setattr(out, attr, [getattr(parts[i], attr)[k] for _, i, k in pairs])
        return out

    def _dm_scale(self, k: int) -> float:
        start = self.starts_[k]
        return start[1] if start is not None and start[0] == "dm" else 1.0

    def _grid_index(self, lam: float) -> int:
        return int(np.abs(self.lambdas_ - lam).argmin())

    def _head_scores(self, k: int, X, input_tokens=None) -> np.ndarray:
        f = self.fallback_[k]
        if f is None:
            pass
        elif f == "dm":  # the direct method, scaled as the "dm" start
            return self._offset(("dm", self._dm_scale(k)), self.lambdas_[k], X, input_tokens)
        elif f == "logging":
            return self._offset(("logging", 1.0), self.lambdas_[k], X, input_tokens)
        elif f == "dr-regress":
            return self.regress_.scores(X, self.lambdas_[k]) * self._dm_scale(k)
        else:
            return onehot(np.full(len(X), f), self.n_arms_)
        return net_scores(self.nets_[k], X) + self._offset(self.starts_[k], self.lambdas_[k], X, input_tokens)

    def scores(self, X, lam, input_tokens=None):
        return self._head_scores(self._grid_index(lam), X, input_tokens)

    def posterior(self, X, lam, input_tokens=None):
        """The direct method's utilities (the heads' start and fallback) and the arms' spread."""
        ap = getattr(self, "arm_posterior_", None)
        if ap is None or self.nuisance_ is None:
            return None
        return self._offset(("dm", 1.0), float(lam), self._check_X(X), input_tokens), ap.sd()


class RMSoftmaxRouter(_EndpointRouter):
    """RM-Softmax: minimises ``sum_t softmax(f/tau)_t * regret_t`` on DR utilities per lambda
    (see :class:`_EndpointRouter` for starts, early stopping and the fallback rule)."""

    name = "rm-softmax"
    loss = "softmax"


class RMClassificationRouter(_EndpointRouter):
    """RM-Classification: cross-entropy towards ``argmax_t G(t; lambda)`` per lambda."""

    name = "rm-classification"
    loss = "classification"


class RMIntervalRouter(_EndpointRouter):
    """Interval router: endpoint heads on the lambda grid, linearly interpolated in lambda,
    then fine-tuned jointly with lambda drawn uniformly over the grid's range. Answers any
    lambda in ``[lambdas[0], lambdas[-1]]`` (clamped outside).

    ``finetune_epochs=0`` keeps the heads equal to the RM-Softmax endpoint routers.
    """

    name = "rm-interval"
    loss = "softmax"

    def __init__(self, tau: float = 10.0, hidden: int = 128, dropout: float = 0.1, weight_decay: float = 1e-4,
                 lr: float = 1e-3, epochs: int = 40, batch_size: int = 128, margin: float = 0.0,
                 init: str = "auto", holdout: float = 0.0, select: str = "pessimistic",
                 pessimism: float = DEFAULT_PESSIMISM, finetune_epochs: int = 20, finetune_lr: float = 3e-4,
                 random_state: int = 0):
        super().__init__(tau, hidden, dropout, weight_decay, lr, epochs, batch_size, margin, init, holdout,
                         select, pessimism, random_state)
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr

    def _weights(self, lam: float):
        lams = self.lambdas_
        lam = float(np.clip(lam, lams[0], lams[-1]))
        k = int(np.clip(np.searchsorted(lams, lam, side="right") - 1, 0, len(lams) - 1))
        if k == len(lams) - 1:
            return k, k, 0.0
        alpha = (lam - lams[k]) / (lams[k + 1] - lams[k])
        return k, k + 1, alpha

    def scores(self, X, lam, input_tokens=None):
        k, k1, alpha = self._weights(lam)
        s = self._head_scores(k, X, input_tokens)
        return s if alpha == 0.0 else (1 - alpha) * s + alpha * self._head_scores(k1, X, input_tokens)

    @seeded
    def fit(self, data: RoutingData, lambdas, endpoints: RMSoftmaxRouter | None = None):
        """Heads from ``endpoints`` (an RM-Softmax router fitted on the same grid) when given."""
        if endpoints is not None and np.array_equal(endpoints.lambdas_, np.sort(np.asarray(lambdas, float))):
            self.n_arms_, self.lambdas_, self.nuisance_ = endpoints.n_arms_, endpoints.lambdas_.copy(), \
                endpoints.nuisance_
            self.n_features_in_ = endpoints.n_features_in_
            self.arm_posterior_ = getattr(endpoints, "arm_posterior_", None)
            self.nets_ = [_clone_net(n) for n in endpoints.nets_]
            self.starts_ = list(endpoints.starts_)
            self.fallback_ = list(endpoints.fallback_)
            self.val_values_ = list(endpoints.val_values_)
            self.regress_ = getattr(endpoints, "regress_", None)
            self.selection_ = list(getattr(endpoints, "selection_", []))
        else:
            super().fit(data, lambdas)
        if self.finetune_epochs > 0 and len(self.lambdas_) > 1:
            self._finetune(data)
            self._recheck(data)
        return self

    def _recheck(self, data: RoutingData):
        """Fine-tuning follows the validation DR value of the whole interval policy: a fine-tuned
        head stays only while its improvement over the direct method keeps a positive lower bound."""
        _, (X, _, tok, ev) = self._split_validation(data)
        if self.select != "pessimistic" or X is None or ev is None or self.nuisance_ is None:
            return
        for k, f in enumerate(self.fallback_):
            if f is not None:
                continue
            net = self._head_scores(k, X, tok).argmax(1)
            self.fallback_[k] = "dm"
            dm = self._head_scores(k, X, tok).argmax(1)
            name, bounds = select_policy({"dm": dm, "network": net}, "dm", ev, self.lambdas_[k],
                                         pessimism=self.pessimism)
            self.fallback_[k] = None if name == "network" else "dm"
            if k < len(self.selection_):
                self.selection_[k] = {**self.selection_[k], "finetuned": bounds["network"]}

    def _val_value(self, data) -> float:
        mids = (self.lambdas_[:-1] + self.lambdas_[1:]) / 2
        vals = []
        for lam in np.concatenate([self.lambdas_, mids]):
            G = data.val_utilities.at(lam)
            vals.append(G[np.arange(len(G)), self.predict(data.X_val, lam, data.val_input_tokens)].mean())
        return float(np.mean(vals))

    def _finetune(self, data: RoutingData):
        # only learned heads move; fallback heads stay the constant best single model
        live = [k for k, f in enumerate(self.fallback_) if f is None]
        if not live:
            return
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        params = [p for k in live for p in self.nets_[k].parameters()]
        opt = torch.optim.AdamW(params, lr=self.finetune_lr, weight_decay=self.weight_decay)
        Xt = torch.as_tensor(data.X, dtype=torch.float32)
        Gq = torch.as_tensor(data.utilities.quality, dtype=torch.float32)
        Gc = torch.as_tensor(data.utilities.cost, dtype=torch.float32)
        # fixed parts of each head on the training rows: its start's offset, or its constant
        fixed = [torch.as_tensor(
            self._head_scores(k, data.X, data.input_tokens) if f is not None
            else self._offset(self.starts_[k], self.lambdas_[k], data.X, data.input_tokens), dtype=torch.float32)
            for k, f in enumerate(self.fallback_)]
        scales = {lam: float(data.utilities.at(lam).std()) or 1.0 for lam in self.lambdas_}
        has_val = data.X_val is not None
        best = self._val_value(data) if has_val else -np.inf
        best_state = [_clone_net(n) for n in self.nets_]
        n = len(Xt)
        for _ in range(self.finetune_epochs):
            for net in self.nets_:
                net.train()
            for idx in np.array_split(rng.permutation(n), max(1, n // self.batch_size)):
                lam = float(rng.uniform(self.lambdas_[0], self.lambdas_[-1]))
                k, k1, alpha = self._weights(lam)
                s = self._torch_head(k, Xt[idx], fixed[k][idx]) * (1 - alpha) + \
                    self._torch_head(k1, Xt[idx], fixed[k1][idx]) * alpha
                scale = (1 - alpha) * scales[self.lambdas_[k]] + alpha * scales[self.lambdas_[k1]]
                loss = rm_softmax_loss(s, (Gq[idx] - lam * Gc[idx]) / scale, self.tau)
                if not loss.requires_grad:
                    continue
                opt.zero_grad()
                loss.backward()
                opt.step()
            for net in self.nets_:
                net.eval()
            if has_val:
                v = self._val_value(data)
                if v > best:
                    best, best_state = v, [_clone_net(n) for n in self.nets_]
        if has_val:
            self.nets_ = best_state
        for net in self.nets_:
            net.eval()

    def _torch_head(self, k: int, xb: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return fixed if self.fallback_[k] is not None else self.nets_[k](xb) + fixed


def _clone_net(net: MLP) -> MLP:
    return copy.deepcopy(net)
