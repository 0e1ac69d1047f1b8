"""The served policy: the router's choice, plus exploration that keeps every model's propensity bounded.

The decisions the service logs are the next round's training data. A deterministic router logs
propensities of 0 or 1, and DR weights on such logs are unbounded, so the service draws the model
from a stochastic policy built on the router's scores and records the probability of the model
it drew.

For one prompt with router scores ``s`` (K,) and exploration rate ``e > 0``:

- the router's choice ``a = argmax s`` keeps ``1 - e``;
- ``e`` is spread over the other models with weights ``w_t = exp(z_t / temperature) * thin_t``:
  ``z_t = (s_t - s_a) / std(s)`` is large where the router is unsure (a runner-up close to the
  choice), ``thin_t = sqrt((mean(n) + 1) / (n_t + 1))`` is large for models with few logged
  decisions ``n_t``;
- every model gets at least ``floor``: ``e`` is raised to ``(K - 1) * floor`` when lower, and the
  other models' shares are ``floor + (e - (K - 1) * floor) * w_t / sum(w)`` (and ``e`` is
  capped at ``1 - floor`` so that the router's choice keeps its floor too);
- with a challenger (a router trained but not yet promoted) whose choice ``c`` differs from ``a``,
  a share ``challenger_share`` of the spread ``e - (K - 1) * floor`` goes to ``c`` instead
  (a canary). The promotion gate compares the challenger with the champion on the rows where
  they disagree; spread evenly over ``K - 1`` models, the exploration plays ``c`` there with
  probability about ``e / (K - 1)``, too rarely to give the gate evidence
  (``benchmarks/results/loop_gate_alpha/canary.csv``).

``strategy="thompson"`` replaces the fixed rate by the router's own uncertainty (Thompson
sampling, :mod:`causal_router.policy.posterior`): with ``T`` the probability that each model is
the best under the router's posterior (its direct-method utilities, each model's spread shrinking
with its logged rows, scaled by ``posterior_scale``), the router's choice keeps ``max T`` and the
others share the rest in proportion to ``T``. So a prompt where a rarely logged model may be the best
is explored much more than one where the choice is clear, and exploration fades as the logs fill.
``explore`` is then the least share sent off the router's choice; ``floor`` and the challenger's
share apply as above. Routers without a posterior are explored as ``"spread"``.

``explore = 0`` is the deterministic router (propensity 1), e.g. for shadow runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings.params import EXPLORE, FLOOR, POSTERIOR_SCALE, STRATEGIES, TEMPERATURE
from .posterior import prob_best

__all__ = ["STRATEGIES", "ExplorationPolicy", "check_explore", "pool_probabilities"]


@dataclass(frozen=True)
class ExplorationPolicy:
    """Stochastic routing around a router's scores (see the module docstring).

    Parameters
    ----------
    explore : float in [0, 1]
        Default exploration rate (a request may pass its own).
    floor : float >= 0
        Least probability of every model whenever ``explore > 0``; ``K * floor <= 1``.
    temperature : float > 0
        Spread of the exploration over the other models: large is close to uniform, small
        concentrates it on the router's runners-up.
    challenger_share : float in [0, 1]
        Share of the spread that goes to a challenger's choice where it differs from the router's.
    strategy : {"spread", "thompson"}
        How much to explore per prompt and where (see the module docstring).
    posterior_scale : float > 0
        ``"thompson"``: multiplies the posterior's spread (below 1 explores less than plain
        Thompson sampling; ``benchmarks/results/exploration_sim/exploration_sim.md``).
    """

    # the served policy's defaults (causal_router.settings.params, params.yaml's serve section), except
    # the two switches: the plain policy sends nothing to a challenger and explores at a fixed rate;
    # the service turns both on from its settings (ServeSettings.challenger_share, .strategy)
    explore: float = EXPLORE
    floor: float = FLOOR
    temperature: float = TEMPERATURE
    challenger_share: float = 0.0
    strategy: str = "spread"
    posterior_scale: float = POSTERIOR_SCALE

    def __post_init__(self):
        check_explore(self.explore)
        if not (np.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"floor must be a finite number >= 0, got {self.floor!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not (np.isfinite(self.challenger_share) and 0.0 <= self.challenger_share <= 1.0):
            raise ValueError(f"challenger_share must be a number in [0, 1], got {self.challenger_share!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not (np.isfinite(self.posterior_scale) and self.posterior_scale > 0):
            raise ValueError(f"posterior_scale must be a finite number > 0, got {self.posterior_scale!r}")

    def probabilities(self, scores, explore: float | None = None, counts=None, challenger=None,
                      posterior=None) -> np.ndarray:
        """Routing probabilities.

        Parameters
        ----------
        scores : array of shape (n, K)
            The router's scores (higher is better); the argmax is the router's choice.
        explore : float or None
            Exploration rate for these rows (None: ``self.explore``).
        counts : array of shape (K,) or None
            Logged decisions per model so far (None: treated as equal).
        challenger : array of shape (n,) int or None
            A challenger's choices (model indices); a share ``challenger_share`` of the spread goes
            to them where they differ from the router's.

        Returns
        -------
        ndarray of float, shape (n, K): rows sum to 1.
        """
        s = np.atleast_2d(np.asarray(scores, dtype=float))
        n, K = s.shape
        e = self.explore if explore is None else check_explore(explore)
        best = s.argmax(1)
        P = np.zeros((n, K))
        if e == 0.0 or K == 1:
            P[np.arange(n), best] = 1.0
            return P
        if K * self.floor > 1.0 + 1e-12:
            raise ValueError(f"floor {self.floor} is too high for {K} models (at most {1 / K:.4g})")
        if self.strategy == "thompson" and posterior is not None:
            mean, sd = posterior
            if np.shape(mean) != (n, K):
                raise ValueError(f"posterior mean must have shape ({n}, {K}), got {np.shape(mean)}")
            T = prob_best(mean, self.posterior_scale * np.asarray(sd, dtype=float))
            # the router's choice keeps what the likeliest best model gets: the rest is explored
            e = np.maximum(e, 1.0 - T.max(1, keepdims=True))
            w = T
        else:
            spread = s.std(1, keepdims=True)
            z = (s - s.max(1, keepdims=True)) / np.where(spread > 0, spread, 1.0) / self.temperature
            w = np.exp(z)
            if counts is not None:
                c = np.asarray(counts, dtype=float)
                if c.shape != (K,):
                    raise ValueError(f"counts must have shape ({K},), got {c.shape}")
                w = w * np.sqrt((c.mean() + 1.0) / (np.maximum(c, 0.0) + 1.0))
        e = np.clip(np.broadcast_to(e, (n, 1)), (K - 1) * self.floor, 1.0 - self.floor)
        w[np.arange(n), best] = 0.0
        total = w.sum(1, keepdims=True)
        q = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / (K - 1))
        q[np.arange(n), best] = 0.0
        spread_mass = e - (K - 1) * self.floor
        if challenger is not None and self.challenger_share > 0:
            c = np.asarray(challenger)
            if c.shape != (n,) or not np.issubdtype(c.dtype, np.integer) or ((c < 0) | (c >= K)).any():
                raise ValueError(f"challenger must be ({n},) model indices in [0, {K}), got {c!r}")
            rows = np.flatnonzero(c != best)
            q[rows] *= 1.0 - self.challenger_share
            q[rows, c[rows]] += self.challenger_share
        P = self.floor + spread_mass * q
        P[np.arange(n), best] = 1.0 - e[:, 0]
        return P

    @staticmethod
    def draw(P, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One model per row of ``P`` (n, K); returns the indices (n,) and their propensities (n,)."""
        P = np.asarray(P, dtype=float)
        cdf = np.cumsum(P, axis=1)
        u = rng.random(len(P)) * cdf[:, -1]
        idx = np.minimum((cdf <= u[:, None]).sum(1), P.shape[1] - 1)
        # never draw a zero-probability model through rounding at the top of the cdf
        for i in np.flatnonzero(P[np.arange(len(P)), idx] <= 0):
            idx[i] = int(np.flatnonzero(P[i] > 0)[-1])
        return idx, P[np.arange(len(P)), idx]


def check_explore(explore) -> float:
    """``explore`` as a float in [0, 1], or ValueError."""
    try:
        e = float(explore)
    except (TypeError, ValueError):
        raise ValueError(f"explore must be a number in [0, 1], got {explore!r}") from None
    if not (np.isfinite(e) and 0.0 <= e <= 1.0):
        raise ValueError(f"explore must be a number in [0, 1], got {explore!r}")
    return e


def pool_probabilities(P, models, pool, outcomes=None, share: float = 0.0, min_outcomes: int = 0) -> np.ndarray:
    """The served probabilities over the pool: the router's ``P`` moved onto the models served now,
    with a cold-start share for models with few outcomes. The draw is made from the result, so the
    logged propensity is still exactly the probability the chosen model was drawn with.

    Parameters
    ----------
    P : array (n, K)            the router's policy over its own ``models`` (rows sum to 1)
    models : list of str (K,)   the router's models
    pool : list of str (M,)     the models served now: a router model outside it gets 0 (its mass
                                renormalised over the others, uniform over the pool when none is left);
                                a pool model outside the router (a new model) gets only the cold-start share
    outcomes : mapping model -> int or None   outcomes (feedback rows) per model so far (None: none)
    share : float in [0, 1]     each pool model with fewer than ``min_outcomes`` outcomes gets at least
                                this probability: ``P' = (1 - c * share) P + share`` on those ``c`` models
                                (``share`` lowered to ``1 / c`` when ``c * share > 1``)
    min_outcomes : int >= 0

    Returns
    -------
    ndarray (n, M): rows sum to 1, columns in ``pool`` order.
    """
    P = np.atleast_2d(np.asarray(P, dtype=float))
    models, pool = [str(m) for m in models], [str(m) for m in pool]
    if P.shape[1] != len(models):
        raise ValueError(f"P must have one column per router model ({len(models)}), got {P.shape}")
    if not pool or len(set(pool)) != len(pool):
        raise ValueError(f"the served pool must name at least one model, each once, got {pool}")
    if not (np.isfinite(share) and 0.0 <= share <= 1.0):
        raise ValueError(f"cold_start_share must be a number in [0, 1], got {share!r}")
    col = {m: k for k, m in enumerate(models)}
    Q = np.zeros((len(P), len(pool)))
    for j, m in enumerate(pool):
        if m in col:
            Q[:, j] = P[:, col[m]]
    total = Q.sum(1, keepdims=True)
    # renormalised exactly: a removed model's mass goes to the others in proportion
    Q = np.where(total > 0, Q / np.where(total > 0, total, 1.0), 1.0 / len(pool))
    outcomes = outcomes or {}
    cold = np.array([outcomes.get(m, 0) < min_outcomes for m in pool]) if share > 0 else np.zeros(len(pool), bool)
    if cold.any():
        s = min(float(share), 1.0 / cold.sum())
        Q = (1.0 - s * cold.sum()) * Q + s * cold[None, :]
    return Q
