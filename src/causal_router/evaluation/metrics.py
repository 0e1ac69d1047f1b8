"""Per-method, per-lambda metrics of routing policies on a full-feedback table."""

from __future__ import annotations

import numpy as np

from ..data.matrices import FullFeedback

RECORD_KEYS = ("method", "lambda", "utility", "regret", "accuracy", "cost")


def policy_metrics(P: np.ndarray, ff: FullFeedback, lam: float) -> dict:
    """Mean per-query metrics of routing probabilities P (n, K) on ``ff`` at ``lam``.

    utility: expected ``score - lam * cost``; regret: oracle utility minus utility;
    accuracy: probability of choosing a utility-maximising model; cost and quality: expected.
    """
    U = ff.utility(lam)
    best = U.max(1, keepdims=True)
    optimal = np.isclose(U, best, rtol=0, atol=1e-12)
    utility = float((P * U).sum(1).mean())
    return {
        "lambda": float(lam),
        "utility": utility,
        "regret": float(best.mean() - utility),
        "accuracy": float((P * optimal).sum(1).mean()),
        "cost": float((P * ff.costs).sum(1).mean()),
        "quality": float((P * ff.scores).sum(1).mean()),
    }


def oracle_policy(ff: FullFeedback, lam: float) -> np.ndarray:
    """Per-query oracle: one-hot (n, K) on the best model at ``lam``."""
    U = ff.utility(lam)
    P = np.zeros_like(U)
    P[np.arange(len(U)), U.argmax(1)] = 1.0
    return P


def evaluate_routers(routers: dict, ff: FullFeedback, X: np.ndarray, lambdas, input_tokens=None) -> list[dict]:
    """Records ``{method, lambda, utility, regret, accuracy, cost, quality}`` for every router, plus
    ``oracle``, and ``logging-policy`` when the table carries the logging probabilities.

    routers : dict name -> fitted router; X : (n, d) features of ``ff``'s prompts.
    """
    records = []
    for lam in lambdas:
        policies = {"oracle": oracle_policy(ff, lam)}
        if ff.propensities is not None:
            policies["logging-policy"] = ff.propensities
        for name, router in routers.items():
            policies[name] = router.predict_proba(X, lam, input_tokens)
        for name, P in policies.items():
            records.append({"method": name, **policy_metrics(P, ff, lam)})
    return records


def aiq(costs, qualities, c_min: float, c_max: float) -> float:
    """RouterBench's Average Improvement in Quality: area under the non-decreasing convex hull of
    (cost, quality) points over ``[c_min, c_max]``, divided by the range.

    Left of the cheapest point the curve is flat at its quality (a router can always be
    mixed with itself); right of the dearest point it stays at its best quality.
    """
    pts = sorted(zip(np.asarray(costs, float), np.asarray(qualities, float)))
    hull: list = []
    for c, q in pts:  # upper hull, then keep it non-decreasing
        if hull and q <= hull[-1][1]:
            continue
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append((c, q))
    hc, hq = np.array(hull).T
    if c_max <= c_min:
        return float(hq.max())
    grid = np.linspace(c_min, c_max, 2001)
    return float(np.trapezoid(np.interp(grid, hc, hq), grid) / (c_max - c_min))


def aiq_table(records: list[dict]) -> dict:
    """AIQ per method over its lambda points, on the cost range shared by all methods."""
    methods = sorted({r["method"] for r in records})
    c_all = [r["cost"] for r in records]
    out = {}
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        out[m] = aiq([r["cost"] for r in rs], [r["quality"] for r in rs], min(c_all), max(c_all))
    return out
