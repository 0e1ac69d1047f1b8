"""The one way to build the nuisance models: a :class:`NuisanceConfig` (params.yaml's ``crossfit``
section) makes the :class:`~causal_router.causal.crossfit.CrossFitter` that training and the
promotion gate both use."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .crossfit import CrossFitter
from .outcome import PooledRidge, TokenCostModel
from .scores import DEFAULT_CLIP

PROPENSITY_SOURCES = ("fitted", "logged")


@dataclass(frozen=True)
class NuisanceConfig:
    """How nuisances are cross-fitted and how DR weights are clipped.

    Attributes
    ----------
    cv : int               cross-fitting folds
    propensity : str       "fitted" or "logged" (the logs' own ``propensity`` column)
    clip : float           propensity floor of the DR weights
    seed : int             fold assignment
    """

    cv: int = 5
    propensity: str = "fitted"
    clip: float = DEFAULT_CLIP
    seed: int = 0

    def __post_init__(self):
        if self.propensity not in PROPENSITY_SOURCES:
            raise ValueError(f"propensity must be one of {PROPENSITY_SOURCES}, got {self.propensity!r}")
        if int(self.cv) < 2:
            raise ValueError(f"cv must be at least 2 folds, got {self.cv}")
        if not 0.0 <= float(self.clip) < 1.0:
            raise ValueError(f"clip must lie in [0, 1), got {self.clip}")

    @classmethod
    def from_params(cls, section: dict | None) -> NuisanceConfig:
        """From params.yaml's ``crossfit`` section (keys other than the fields are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (section or {}).items() if k in names})

    def crossfitter(self, n_arms: int, prices: np.ndarray | None = None, *, require_all_arms: bool = False,
                    propensity: str | None = None, quality_model=None, propensity_model=None) -> CrossFitter:
        """An unfitted :class:`CrossFitter` over ``n_arms`` arms.

        Parameters
        ----------
        n_arms : int
        prices : ndarray (n_arms, 2) or None
            USD per million input and output tokens per arm; None recovers them from the logs.
        require_all_arms : bool
            Refuse logs in which an arm has no row (else the pooled quality model predicts it).
        propensity : {"fitted", "logged"} or None
            Overrides the configured source (None: the configured one).
        quality_model, propensity_model : estimators or None (defaults: pooled ridge, logistic)
        """
        if prices is not None and np.shape(prices) != (n_arms, 2):
            raise ValueError(f"prices must have shape (n_arms, 2) = ({n_arms}, 2), got {np.shape(prices)}")
        return CrossFitter(
            propensity_model=propensity_model,
            quality_model=quality_model if quality_model is not None else PooledRidge(
                require_all_arms=require_all_arms),
            cost_model=TokenCostModel(prices=prices),
            cv=int(self.cv), propensity=propensity or self.propensity, random_state=self.seed,
        )
