"""Evidence-gated promotion: the first challenger becomes champion, a clearly better one replaces
it, a worse one is refused, and nothing (not even an error) ever leaves the registry without one."""

import mlflow
import numpy as np
import pytest

from causal_router.policy.data import holdout_evidence as fit_holdout_nuisances
from causal_router.promotion.gate import gate_rule, policy_contributions
from causal_router.registry.promote import evaluate_policy_on_logs, load_policy, promote
from causal_router.registry.pyfunc import log_router_model

NAME = "causal-router-interval"


def add_version(routerset_dir, method, alias="challenger"):
    with mlflow.start_run():
        info = log_router_model(routerset_dir, f"router-{method}", method, registered_model_name=NAME)
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(NAME, alias, version)
    return version


def champion():
    return mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")


def holdout(problem):
    h = problem["holdout"]
    return h.logs, h.X


def test_no_challenger(store, problem):
    d = promote(NAME, *holdout(problem))
    assert not d.promoted and d.reason == "no challenger"


def test_first_challenger_becomes_champion(store, routerset_dir, problem):
    v = add_version(routerset_dir, "rm-interval")
    d = promote(NAME, *holdout(problem))
    assert d.promoted and d.decision == "promoted" and d.champion_version is None
    assert str(champion().version) == v
    assert d.challenger is not None and d.challenger.n == len(problem["holdout"].logs)
    tags = mlflow.MlflowClient().get_model_version(NAME, v).tags
    assert tags["promotion.decision"] == "promoted" and "first champion" in tags["promotion.reason"]
    assert tags["promotion.lambdas"] == "0,1000,2000"
    # asking again changes nothing
    again = promote(NAME, *holdout(problem))
    assert not again.promoted and "already the champion" in again.reason and str(champion().version) == v


def test_clearly_better_challenger_is_promoted(store, routerset_dir, problem):
    old = add_version(routerset_dir, "best-single", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    d = promote(NAME, *holdout(problem))
    assert d.promoted, d.summary()
    assert d.champion_version == old and d.challenger_version == new
    assert d.difference.ci_low > 0 and d.difference.value > 0 and "95% interval" in d.reason
    assert str(champion().version) == new
    c = mlflow.MlflowClient()
    tags = c.get_model_version(NAME, new).tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.compared_to_version"] == old
    assert float(tags["promotion.ci_low"]) == pytest.approx(d.challenger.ci_low, rel=1e-5)
    assert float(tags["promotion.champion_value"]) == pytest.approx(d.champion.value, rel=1e-5)
    for k in ("promotion.dr_value", "promotion.ci_high", "promotion.timestamp", "promotion.diff"):
        assert tags[k]
    old_tags = c.get_model_version(NAME, old).tags
    assert old_tags["promotion.last_challenge.version"] == new
    assert old_tags["promotion.last_challenge.decision"] == "promoted"
    # the DR values track the true values of the two policies on the held-out prompts
    h = problem["holdout"]
    true = {m: np.mean([h.value(load_policy(f"models:/{NAME}/{v}").routerset.get(m).predict(h.X, lam), lam)
                        for lam in (0.0, 1000.0, 2000.0)]) for m, v in (("best-single", old), ("rm-interval", new))}
    assert true["rm-interval"] > true["best-single"]
    assert d.challenger.ci_low - 0.05 < true["rm-interval"] < d.challenger.ci_high + 0.05


def test_worse_challenger_is_refused(store, routerset_dir, problem):
    good = add_version(routerset_dir, "rm-interval", alias="champion")
    bad = add_version(routerset_dir, "random")
    d = promote(NAME, *holdout(problem), lam=[0.0, 1000.0, 2000.0])
    assert not d.promoted and d.decision == "rejected", d.summary()
    assert str(champion().version) == good
    assert str(mlflow.MlflowClient().get_model_version_by_alias(NAME, "challenger").version) == bad
    tags = mlflow.MlflowClient().get_model_version(NAME, bad).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.compared_to_version"] == good


def test_error_while_evaluating_leaves_the_champion(store, routerset_dir, problem):
    good = add_version(routerset_dir, "rm-interval", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    logs, X = holdout(problem)
    d = promote(NAME, logs, X[:-5])  # misaligned features
    assert not d.promoted and d.decision == "error" and "X must have shape" in d.reason
    assert str(champion().version) == good
    assert mlflow.MlflowClient().get_model_version(NAME, new).tags["promotion.decision"] == "error"
    bad_logs = logs.assign(model=logs["model"].where(logs.index > 0, "unknown-model"))
    d = promote(NAME, bad_logs, X)
    assert d.decision == "error" and str(champion().version) == good


def test_dry_run_moves_nothing(store, routerset_dir, problem):
    good = add_version(routerset_dir, "best-single", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    d = promote(NAME, *holdout(problem), dry_run=True)
    assert d.promoted and str(champion().version) == good
    assert "promotion.decision" not in mlflow.MlflowClient().get_model_version(NAME, new).tags


def test_evaluate_policy_on_logs_works_on_router_sets(routerset, routerset_dir, problem):
    h = problem["holdout"]
    est = evaluate_policy_on_logs(routerset, h.logs, h.X, lam=0.0)
    same = evaluate_policy_on_logs(str(routerset_dir), h.logs, h.X, lam=0.0)
    assert est == same and est.ci_low < est.value < est.ci_high
    truth = h.value(routerset.get("rm-interval").predict(h.X, 0.0), 0.0)
    assert abs(est.value - truth) < 4 * est.se + 0.02
    # one set of nuisances serves several routers; a list of lambdas averages the contributions
    ev = fit_holdout_nuisances(h.logs, h.X, routerset.models)
    p = load_policy(routerset)
    both = policy_contributions(p, ev, [0.0, 2000.0])
    np.testing.assert_allclose(both, (policy_contributions(p, ev, 0.0) + policy_contributions(p, ev, 2000.0)) / 2)
    assert ev.propensity == "logged"
    ev_fit = fit_holdout_nuisances(h.logs.drop(columns=["propensity"]), h.X, routerset.models)
    assert ev_fit.propensity == "fitted"


def test_gate_is_paired_so_a_small_holdout_can_promote_a_better_router():
    """Rows where both routers choose the same model carry the same contribution: the paired interval
    sees only the disagreements. On 60 rows with noisy outcomes, a challenger that is better on a
    fifth of them is promoted, where comparing its own lower bound with the champion's value would not."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.5, size=60)             # the rows' shared noise (outcomes, DR corrections)
    gain = np.where(np.arange(60) % 5 == 0, 0.4, 0.0) + np.where(np.arange(60) % 5 == 0, rng.normal(0, 0.1, 60), 0)
    promoted, diff, reason = gate_rule(base + gain, base, rule="bound")
    assert promoted and diff.ci_low > 0 and "lower bound" in reason
    from causal_router.causal.ope import summarize

    assert not summarize(base + gain).ci_low > summarize(base).value  # the unpaired rule's verdict


def test_gate_rarely_promotes_a_router_that_is_no_better():
    """Size: the challenger differs from the champion on a third of the rows by zero-mean noise; the
    one-sided rejection rate of the 95% interval is 2.5%, allowed up to 6% over 400 replicates."""
    rng = np.random.default_rng(1)
    promotions = 0
    for _ in range(400):
        base = rng.normal(0.6, 0.5, size=120)
        noise = np.where(rng.random(120) < 1 / 3, rng.normal(0, 0.3, 120), 0.0)
        promotions += gate_rule(base + noise, base, rule="bound")[0]
    assert promotions / 400 < 0.06
    # and a worse one never
    base = rng.normal(0.6, 0.5, size=120)
    assert not gate_rule(base - np.where(np.arange(120) % 3 == 0, 0.2, 0.0), base, rule="bound")[0]


def test_a_non_inferiority_margin_promotes_an_equal_router_and_still_rejects_a_worse_one():
    """margin > 0: promote unless the evidence says the challenger loses more than the margin. An
    equally good retrain (differences of zero mean on a tenth of the rows) passes at margin 0.05 and
    mostly fails at margin 0; a challenger 0.1 worse on average fails at any margin below that."""
    rng = np.random.default_rng(2)
    passed = {0.0: 0, 0.05: 0}
    for _ in range(200):
        base = rng.normal(0.6, 0.5, size=400)
        noise = np.where(rng.random(400) < 0.1, rng.normal(0, 0.3, 400), 0.0)
        for margin in passed:
            passed[margin] += gate_rule(base + noise, base, margin=margin, rule="bound")[0]
    assert passed[0.05] / 200 > 0.95 and passed[0.0] / 200 < 0.06
    worse = base - np.where(np.arange(400) % 2 == 0, 0.2, 0.0)
    promoted, _, reason = gate_rule(worse, base, margin=0.05, rule="bound")
    assert not promoted and "non-inferiority margin" in reason
    with pytest.raises(ValueError, match="margin"):
        gate_rule(base, base, margin=-0.01)


def test_the_default_rule_promotes_on_the_sign_of_the_difference():
    """rule estimate: promote iff the paired difference is above -margin. An identical challenger is
    never promoted, nor a worse one; a better one is, even where the 95% bound would not yet say so."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.6, 0.5, size=200)
    assert not gate_rule(base, base)[0]
    quarter = np.arange(200) % 4 == 0
    better = base + np.where(quarter, 0.08 + rng.normal(0, 0.3, 200), 0.0)
    promoted, diff, reason = gate_rule(better, base)
    assert promoted == (diff.value > 0) and "DR value" in reason and "95% interval" in reason
    assert diff.value > 0 and diff.ci_low < 0 and not gate_rule(better, base, rule="bound")[0]
    assert not gate_rule(base - np.where(quarter, 0.08, 0.0), base)[0]
    with pytest.raises(ValueError, match="rule must be one of estimate, bound"):
        gate_rule(better, base, rule="pointwise")


def test_overlap_trimming_removes_the_bias_that_clipping_leaves_on_thinly_logged_choices():
    """The loop's failure (benchmarks/results/gate_diagnosis/) in miniature. Model 2 is truly better
    on half the prompts; on half of all prompts the logging policy served it with probability 0.002, and
    the outcome model has shrunk it onto the others. Clipped at 0.1, the DR weights there are 10 where
    500 were due: the paired difference comes out at about half the truth. Counting rows without
    overlap as no difference leaves an unbiased estimate of the gain where the logs can show it."""
    from causal_router.causal.crossfit import Nuisances
    from causal_router.causal.ope import HoldoutEvidence

    rng = np.random.default_rng(0)
    n = 20000
    rows = np.arange(n)
    good = rng.random(n) < 0.5
    e2 = np.where(rng.random(n) < 0.5, 0.002, 0.2)
    P = np.column_stack([(1 - e2) / 2, (1 - e2) / 2, e2])
    t = (rng.random(n)[:, None] > P.cumsum(1)).sum(1)
    mean = np.column_stack([np.full(n, 0.5), np.full(n, 0.5), np.where(good, 0.8, 0.5)])
    y = rng.binomial(1, mean[rows, t]).astype(float)
    mu = np.full((n, 3), 0.5)  # the shrunk outcome model
    ev = HoldoutEvidence(np.zeros((n, 1)), t, y, np.zeros(n), None,
                         Nuisances(P, P[rows, t], mu, np.zeros((n, 3))), "logged", 0.1, logging=P)
    challenger, champion = np.where(good, 2, 0), np.zeros(n, dtype=int)
    k_ch, k_cp = ev.contributions(challenger, 0.0), ev.contributions(champion, 0.0)
    gap = mean[rows, challenger] - mean[rows, champion]
    assert (k_ch - k_cp).mean() < gap.mean() - 0.05  # every row counted: biased by the clip
    support = ev.supported(challenger, 0.1) & ev.supported(champion, 0.1)
    np.testing.assert_array_equal(support, (e2 == 0.2) | ~good)  # model 0 always had support
    promoted, diff, reason = gate_rule(np.where(support, k_ch, k_cp), k_cp, without_overlap=int((~support).sum()))
    assert abs(diff.value - np.where(support, gap, 0.0).mean()) < 3 * diff.se and promoted
    assert "too small a probability" in reason
    # rows without a logged vector are not trimmed; no support asked: nothing trimmed
    ev.logging = np.where((rows % 2 == 0)[:, None], np.nan, P)
    assert ev.supported(challenger, 0.1)[rows % 2 == 0].all()
    assert ev.supported(challenger, 0.0).all()


def test_the_gate_reads_the_logged_vectors_and_records_its_overlap(store, routerset_dir, problem):
    """With ``propensities`` in the holdout the gate counts rows without overlap as no difference:
    overlap 0 is the gate on every row; an overlap no row reaches leaves no evidence, so nothing is
    promoted; the default, 0.1, records how many rows it set aside."""
    from causal_router.data import schema as S

    h = problem["holdout"]
    logs = h.logs.assign(**{S.PROPENSITIES: [S.propensities_json(h.models, p) for p in h.propensity]})
    old = add_version(routerset_dir, "best-single", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    every_row = promote(NAME, h.logs, h.X, dry_run=True)  # no vectors: nothing to trim
    d = promote(NAME, logs, h.X, dry_run=True, overlap=0.0)
    assert d.promoted and d.without_overlap == 0 and d.difference == every_row.difference
    d = promote(NAME, logs, h.X, dry_run=True, overlap=0.999)
    assert not d.promoted and d.without_overlap > 0 and d.difference.value == 0.0
    for bad in (1.0, -0.1, "0.1", float("nan")):  # a bad setting is an error decision, named
        d = promote(NAME, logs, h.X, dry_run=True, overlap=bad)
        assert d.decision == "error" and "overlap must be a number in [0, 1)" in d.reason
    d = promote(NAME, logs, h.X)  # the default: overlap 0.1
    assert 0 < d.without_overlap < len(logs) and d.difference.value < every_row.difference.value
    tags = mlflow.MlflowClient().get_model_version(NAME, new).tags
    assert tags["promotion.overlap"] == "0.1" and tags["promotion.n_without_overlap"] == str(d.without_overlap)
    assert tags["promotion.decision"] == d.decision and str(champion().version) == (new if d.promoted else old)


def test_a_challenger_that_does_not_cover_the_champion_is_refused_and_says_why(store, routerset_dir, problem):
    """A challenger serving a narrower lambda range than the champion (here an endpoint router at
    lambda 1000 against the interval router on 0-2000) would make the service refuse requests the
    champion answered: the gate refuses it before weighing evidence, and the tags say why."""
    good = add_version(routerset_dir, "rm-interval", alias="champion")
    narrow = add_version(routerset_dir, "rm-softmax")
    d = promote(NAME, *holdout(problem))
    assert not d.promoted and d.decision == "rejected" and d.difference is None, d.summary()
    assert "does not cover the champion" in d.reason and "lambda 1000 to 1000" in d.summary()
    assert str(champion().version) == good
    tags = mlflow.MlflowClient().get_model_version(NAME, narrow).tags
    assert tags["promotion.decision"] == "rejected" and "does not cover" in tags["promotion.reason"]
    assert "lambda 1000 to 1000" in tags["promotion.coverage"] and "0 to 2000" in tags["promotion.coverage"]
    # a challenger that covers the champion is judged on the evidence, and the tag says it covered
    wide = add_version(routerset_dir, "rm-interval")
    d = promote(NAME, *holdout(problem))
    assert d.coverage == "covered" and d.difference is not None
    assert mlflow.MlflowClient().get_model_version(NAME, wide).tags["promotion.coverage"] == "covered"


def test_outcome_rows_train_holdout_reads_the_training_logs_and_tags_the_rows_per_model(store, routerset_dir, problem):
    """``outcome_rows`` ``train+holdout``: the evidence's outcome models learn from the training logs too
    (the decision and the tags count the rows of each); without the training logs it is an error that
    leaves the champion where it was."""
    old = add_version(routerset_dir, "best-single", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    tr = problem["train"]
    lacking = promote(NAME, *holdout(problem), outcome_rows="train+holdout")
    assert lacking.decision == "error" and "needs the training logs" in lacking.reason
    assert str(champion().version) == old
    d = promote(NAME, *holdout(problem), outcome_rows="train+holdout", support=[(tr.logs, tr.X)])
    assert d.promoted, d.summary()
    held = d.rows_per_model
    assert sum(held.values()) == len(problem["holdout"].logs)
    assert sum(d.outcome_rows_per_model.values()) == len(problem["holdout"].logs) + len(tr.logs)
    tags = mlflow.MlflowClient().get_model_version(NAME, new).tags
    assert tags["promotion.outcome_rows"] == "train+holdout"
    assert tags["promotion.rows_per_model"] == ",".join(f"{m}={n}" for m, n in held.items())
