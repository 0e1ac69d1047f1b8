"""The one promotion gate, without MLflow: coverage of the champion's lambda range and models, the
first champion, the rules (estimate, bound, margin), the overlap and the settings."""

import numpy as np
import pytest

from causal_router.causal.crossfit import Nuisances
from causal_router.causal.ope import HoldoutEvidence
from causal_router.promotion.gate import (
    COVERED,
    GateDecision,
    GateSettings,
    Policy,
    coverage_shortfall,
    decide,
    gate_contributions,
    gate_rule,
)

MODELS = ["cheap", "mid", "strong"]


class Choose:
    """A router that sends each row to ``choice(X)`` (one-hot probabilities)."""

    def __init__(self, choice):
        self.choice = choice

    def predict_proba(self, X, lam, input_tokens=None):
        out = np.zeros((len(X), len(MODELS)))
        out[np.arange(len(X)), self.choice(X)] = 1.0
        return out


class Set:
    """The part of a RouterSet the gate reads."""

    def __init__(self, router, lambdas=(0.0, 74000.0), models=MODELS):
        self.models, self.lambdas, self._router = list(models), list(lambdas), router

    def get(self, method):
        return self._router


def policy(choice, lambdas=(0.0, 74000.0), models=MODELS):
    return Policy.of(Set(Choose(choice), lambdas, models), "rm-interval")


def evidence(n=4000, seed=0, thin=0.2):
    """Held-out logs where ``strong`` is truly better (quality 0.8 against 0.5) on the rows with
    X[:, 0] > 0 and the same elsewhere; the logging policy served ``strong`` with probability 0.002
    on half the rows (X[:, 1] > 0) and ``thin`` on the others. Costs are 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    rows = np.arange(n)
    good = X[:, 0] > 0
    e2 = np.where(X[:, 1] > 0, 0.002, thin)
    P = np.column_stack([(1 - e2) / 2, (1 - e2) / 2, e2])
    t = (rng.random(n)[:, None] > P.cumsum(1)).sum(1)
    mean = np.column_stack([np.full(n, 0.5), np.full(n, 0.5), np.where(good, 0.8, 0.5)])
    y = rng.binomial(1, mean[rows, t]).astype(float)
    return HoldoutEvidence(X, t, y, np.zeros(n), None, Nuisances(P, P[rows, t], mean, np.zeros((n, 3))), "logged",
                           0.01, logging=P)


def better(X):
    return np.where(X[:, 0] > 0, 2, 0)


def worse(X):
    return np.where(X[:, 0] > 0, 0, 1)


def champion_choice(X):
    return np.zeros(len(X), dtype=int)


def never(models):
    raise AssertionError("the gate asked for evidence it did not need")


def test_a_challenger_on_a_narrower_lambda_range_is_refused_without_evidence():
    """The new user's defect: a challenger trained on lambda 0-500 replaced a champion serving
    0-74000, and requests at lambda 7400 were refused (422) until the next retrain."""
    d = decide(policy(better, (0.0, 500.0)), policy(champion_choice), never, GateSettings())
    assert isinstance(d, GateDecision)
    assert not d.promoted and d.decision == "rejected" and d.difference is None
    assert "lambda 0 to 500" in d.coverage and "0 to 74000" in d.coverage
    assert "does not cover the champion" in d.reason and d.coverage in d.reason
    # a range that only starts higher is refused too
    assert "lambda 100 to 74000" in coverage_shortfall(policy(better, (100.0, 74000.0)), policy(champion_choice))


def test_a_challenger_without_one_of_the_champions_models_is_refused():
    two = ["cheap", "mid"]
    ch = Policy.of(Set(Choose(lambda X: np.zeros(len(X), dtype=int)), models=two), "rm-interval")
    d = decide(ch, policy(champion_choice), never, GateSettings())
    assert not d.promoted and d.decision == "rejected" and "strong" in d.coverage and "lambda" not in d.coverage


def test_a_challenger_that_covers_more_is_judged_on_the_evidence():
    wider = Set(Choose(better), models=MODELS + ["new"])
    assert coverage_shortfall(Policy.of(wider, "rm-interval"), policy(champion_choice)) == ""  # more models
    ch = policy(better, (0.0, 100000.0))  # a wider lambda range
    assert coverage_shortfall(ch, policy(champion_choice)) == ""
    d = decide(ch, policy(champion_choice), lambda models: evidence(), GateSettings(overlap=0.0, lambdas=0.0))
    assert d.coverage == COVERED and d.difference is not None and d.promoted


def test_the_first_champion_needs_no_evidence_and_no_coverage():
    d = decide(policy(better, (0.0, 1.0)), None, None, GateSettings())
    assert d.promoted and d.decision == "promoted" and "first champion" in d.reason and d.coverage == ""
    assert d.challenger is None
    d = decide(policy(better), None, evidence(), GateSettings(lambdas=[0.0]))
    assert d.challenger is not None and d.challenger.n == 4000


def test_a_champion_without_evidence_is_an_error():
    with pytest.raises(ValueError, match="held-out logs"):
        decide(policy(better), policy(champion_choice), None, GateSettings())


def test_the_decision_is_the_paired_rule_on_the_gate_contributions():
    ev = evidence()
    ch, cp = policy(better), policy(champion_choice)
    s = GateSettings(overlap=0.1, lambdas=[0.0, 1000.0])
    d = decide(ch, cp, ev, s)
    _, k_gate, g_cp, k_cp, n_out = gate_contributions(ch, cp, ev, [0.0, 1000.0], MODELS, 0.1)
    assert np.array_equal(g_cp, k_cp)  # tie: the champion counts with its own contributions
    promoted, diff, reason = gate_rule(k_gate, k_cp, without_overlap=n_out)
    assert (d.promoted, d.difference, d.reason, d.without_overlap) == (promoted, diff, reason, n_out)
    assert d.lambdas == [0.0, 1000.0] and d.promoted and d.decision == "promoted"
    assert not decide(policy(worse), cp, ev, s).promoted


def test_rule_estimate_promotes_on_the_sign_and_bound_on_the_lower_end():
    ev = evidence(n=300, seed=1)
    ch, cp = policy(better), policy(champion_choice)
    est = decide(ch, cp, ev, GateSettings(overlap=0.0, lambdas=0.0, rule="estimate"))
    bound = decide(ch, cp, ev, GateSettings(overlap=0.0, lambdas=0.0, rule="bound", alpha=0.001))
    assert est.difference == bound.difference or est.difference.value == pytest.approx(bound.difference.value)
    assert est.promoted and est.difference.value > 0
    assert bound.difference.ci_low <= 0 and not bound.promoted and "lower bound" in bound.reason
    # a margin tolerates a loss up to it
    lenient = decide(ch, cp, ev, GateSettings(overlap=0.0, lambdas=0.0, rule="bound", alpha=0.001, margin=1.0))
    assert lenient.promoted and "non-inferiority" in lenient.reason
    with pytest.raises(ValueError, match="rule must be one of"):
        decide(ch, cp, ev, GateSettings(rule="pointwise", lambdas=0.0))


def test_rows_without_overlap_count_as_no_difference():
    ev = evidence()
    ch, cp = policy(better), policy(champion_choice)
    every = decide(ch, cp, ev, GateSettings(overlap=0.0, lambdas=0.0))
    trimmed = decide(ch, cp, ev, GateSettings(overlap=0.1, lambdas=0.0))
    assert every.without_overlap == 0 and trimmed.without_overlap > 0
    assert "too small a probability" in trimmed.reason
    # only rows where strong was logged with 0.002 and the routers disagree are set aside
    assert trimmed.without_overlap == int(((ev.X[:, 0] > 0) & (ev.X[:, 1] > 0)).sum())
    nothing = decide(ch, cp, ev, GateSettings(overlap=0.999, lambdas=0.0))
    assert nothing.difference.value == 0.0 and not nothing.promoted
    with pytest.raises(ValueError, match="overlap must be a number"):
        decide(ch, cp, ev, GateSettings(overlap=1.0, lambdas=0.0))


def test_switch_judges_rows_without_overlap_on_the_outcome_models():
    """Where the challenger's choice was served below ``overlap`` on every row it differs (a model the
    logs barely served), ``tie`` sees an exact 0 and rejects; ``switch`` counts the outcome models there
    (strong's 0.8 against cheap's 0.5) and promotes; a challenger worse on the outcome models stays out."""
    ev = evidence(thin=0.002)  # strong served with probability 0.002 everywhere
    ch, cp = policy(better), policy(champion_choice)
    tie = decide(ch, cp, ev, GateSettings(overlap=0.1, lambdas=0.0))
    assert tie.difference.value == 0.0 and not tie.promoted and tie.without_overlap > 0
    switch = decide(ch, cp, ev, GateSettings(overlap=0.1, lambdas=0.0, no_overlap="switch"))
    assert switch.promoted and "outcome models (SWITCH)" in switch.reason
    assert switch.difference.value == pytest.approx(0.3 * (ev.X[:, 0] > 0).mean(), abs=0.02)  # the DM gain
    assert not decide(policy(worse), cp, ev, GateSettings(overlap=0.1, lambdas=0.0, no_overlap="switch")).promoted
    # where every choice has overlap, switch is the DR gate
    ev_wide = evidence(thin=0.5)
    wide = decide(ch, cp, ev_wide, GateSettings(overlap=0.0, lambdas=0.0, no_overlap="switch"))
    assert wide.difference == decide(ch, cp, ev_wide, GateSettings(overlap=0.0, lambdas=0.0)).difference
    with pytest.raises(ValueError, match="no_overlap must be one of"):
        decide(ch, cp, ev, GateSettings(overlap=0.1, lambdas=0.0, no_overlap="ignore"))


def test_switch_contributions_replace_only_thinly_served_models_pseudo_outcomes():
    ev = evidence(thin=0.2)
    pi = np.tile([0.0, 0.0, 1.0], (len(ev.X), 1))  # always strong: served at 0.002 where X[:, 1] > 0
    dr, sw = ev.contributions(pi, 0.0), ev.switch_contributions(pi, 0.0, 0.1)
    thin = ev.X[:, 1] > 0
    assert not np.allclose(sw[thin], dr[thin])  # strong's few logged rows there carried 500x weights
    assert np.allclose(sw[~thin], dr[~thin])
    assert np.allclose(sw[thin], ev.nuisances.quality[thin, 2])
    assert np.array_equal(ev.switch_contributions(pi, 0.0, 0.0), dr)


def test_settings_come_from_the_promote_section():
    s = GateSettings.from_params({"lambdas": [0, 10], "alpha": 0.1, "margin": 0.01, "overlap": 0.0,
                                  "rule": "bound", "keep_versions": 5})
    assert s == GateSettings(alpha=0.1, margin=0.01, overlap=0.0, rule="bound", lambdas=[0, 10])
    assert GateSettings() == GateSettings(alpha=0.05, margin=0.0, overlap=0.1, rule="estimate", lambdas=None)


def test_the_summary_names_a_missing_champion_in_words():
    first = GateDecision(name="r", decision="promoted", challenger_version="1", reason="no champion yet")
    assert "no champion before" in first.summary() and "vNone" not in first.summary()
    later = GateDecision(name="r", decision="rejected", challenger_version="2", champion_version="1")
    assert "champion before v1" in later.summary()


def test_a_challenger_with_a_new_model_of_few_rows_is_judged_and_the_evidence_counts_its_rows():
    """A model new to the pool has only its cold-start rows in the holdout (3 here): the gate still
    weighs the challenger that routes to it, and the decision records the rows of every model."""
    ev = evidence()
    n = len(ev.X)
    t = ev.treatment.copy()
    t[:3] = 3  # three rows of the new model
    P = np.column_stack([ev.logging * 0.99, np.full(n, 0.01)])
    mean = np.column_stack([ev.nuisances.quality, np.full(n, 0.9)])
    rows = np.arange(n)
    ev4 = HoldoutEvidence(ev.X, t, ev.quality, ev.cost, None, Nuisances(P, P[rows, t], mean, np.zeros((n, 4))),
                          "logged", 0.01, logging=P)
    four = MODELS + ["new"]

    class Four(Choose):
        def predict_proba(self, X, lam, input_tokens=None):
            out = np.zeros((len(X), 4))
            out[np.arange(len(X)), self.choice(X)] = 1.0
            return out

    ch = Policy.of(Set(Four(lambda X: np.where(X[:, 0] > 0, 3, 0)), models=four), "rm-interval")
    d = decide(ch, policy(champion_choice), lambda models: ev4, GateSettings(overlap=0.0, lambdas=0.0))
    assert d.decision in ("promoted", "rejected") and d.difference is not None
    assert d.rows_per_model == {"cheap": int((t == 0).sum()), "mid": int((t == 1).sum()),
                                "strong": int((t == 2).sum()), "new": 3}
    assert d.to_dict()["rows_per_model"]["new"] == 3
    first = decide(ch, None, ev4, GateSettings(lambdas=[0.0]))
    assert first.rows_per_model["new"] == 3
