"""Input checks of the public causal functions, with messages in the style of obp's ``check_ope_inputs``."""

from __future__ import annotations

import numpy as np


def check_vector(name: str, v, n: int | None) -> np.ndarray:
    """``v`` as a float (n,) array; raises ValueError naming ``name`` when it is not."""
    return _vector(name, v, n).astype(float)


def _vector(name: str, v, n: int | None) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1D array, but is {a.ndim}D")
    if n is not None and len(a) != n:
        raise ValueError(f"Expected `{name}.shape[0] == treatment.shape[0]`, but found it False "
                         f"({len(a)} != {n})")
    return a


def check_treatment(treatment, n_arms: int) -> np.ndarray:
    """``treatment`` as (n,) int, each in [0, n_arms); raises ValueError naming what is wrong."""
    t = _vector("treatment", treatment, None)
    if t.size and not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.mod(t.astype(float), 1) == 0):
            raise ValueError("`treatment` must be integers (arm indices)")
    t = t.astype(int)
    if t.size and (t.min() < 0 or t.max() >= n_arms):
        raise ValueError(f"`treatment` must be in [0, n_arms) = [0, {n_arms}), but has values in "
                         f"[{t.min()}, {t.max()}]")
    return t


def check_ope_inputs(policy, treatment, quality, cost, nuisances, n_arms: int) -> np.ndarray:
    """Check the arrays of an off-policy estimate; returns ``treatment`` as (n,) int.

    Parameters
    ----------
    policy : ndarray (n,) int actions, (n, K) probabilities, or None (not checked)
    treatment : ndarray (n,) int in [0, n_arms)
    quality, cost : ndarray (n,)
    nuisances : Nuisances or None (not checked): ``quality``, ``cost`` (n, K), ``logged_propensity`` (n,)
    n_arms : int
    """
    t = check_treatment(treatment, n_arms)
    n = len(t)
    for name, v in (("quality", quality), ("cost", cost)):
        a = _vector(name, v, n)
        if not np.all(np.isfinite(a.astype(float))):
            raise ValueError(f"`{name}` must be finite")
    if nuisances is not None:
        for name in ("quality", "cost"):
            m = np.asarray(getattr(nuisances, name))
            if m.shape != (n, n_arms):
                raise ValueError(f"Expected `nuisances.{name}.shape == ({n}, {n_arms})`, but found {m.shape}")
        e = nuisances.logged_propensity
        if e is None:
            raise ValueError("`nuisances.logged_propensity` is needed (predict with the logged treatment)")
        e = _vector("nuisances.logged_propensity", e, n)
        if np.any(e < 0) or np.any(e > 1):
            raise ValueError("`nuisances.logged_propensity` must be in [0, 1]")
    if policy is not None:
        p = np.asarray(policy)
        if p.ndim == 1:
            check_treatment(p, n_arms)
            if len(p) != n:
                raise ValueError(f"Expected `policy.shape[0] == treatment.shape[0]`, but found it False "
                                 f"({len(p)} != {n})")
        elif p.ndim == 2:
            if p.shape != (n, n_arms):
                raise ValueError(f"Expected `policy.shape == ({n}, {n_arms})`, but found {p.shape}")
            if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError("`policy` probabilities must be non-negative and sum to 1 over arms in each row")
        else:
            raise ValueError(f"`policy` must be 1D actions or 2D probabilities, but is {p.ndim}D")
    return t


def _float_array(X) -> np.ndarray:
    """A float array, keeping float32 features as they are (the learners' numerics follow the dtype)."""
    X = np.asarray(X)
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(float)


def check_fit_inputs(X, treatment, *ys, n_arms: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Check a learner's training arrays; returns ``(X, treatment, n_arms)``.

    Parameters
    ----------
    X : array (n, d)
    treatment : array (n,) int in [0, n_arms)
    *ys : arrays (n,) (outcomes, or None to skip)
    n_arms : int or None
        The arms K (some may have no rows); None infers the largest logged index + 1.
    """
    X = _float_array(X)
    if X.ndim != 2:
        raise ValueError(f"`X` must be 2D array of shape (n, d), but is {X.ndim}D")
    t = np.asarray(treatment)
    if t.ndim != 1 or len(t) != len(X):
        raise ValueError(f"Expected `treatment.shape == (X.shape[0],)` = ({len(X)},), but found {t.shape}")
    if not len(t):
        raise ValueError("no rows to fit on")
    if n_arms is None:
        n_arms = int(np.asarray(t, dtype=float).max()) + 1
    if int(n_arms) < 1:
        raise ValueError(f"n_arms must be a positive integer, got {n_arms}")
    t = check_treatment(t, int(n_arms))
    for i, y in enumerate(ys):
        if y is not None:
            _vector(f"y[{i}]" if len(ys) > 1 else "y", y, len(t))
    return X, t, int(n_arms)


def check_predict_X(estimator, X) -> np.ndarray:
    """``X`` as float (n, d) with the ``d`` the estimator was fitted on."""
    X = _float_array(X)
    d = getattr(estimator, "n_features_in_", None)
    if d is None:
        raise ValueError(f"this {type(estimator).__name__} is not fitted yet: call fit first")
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"{type(estimator).__name__} was fitted on (n, {d}) features, got an array of shape {X.shape}")
    return X
