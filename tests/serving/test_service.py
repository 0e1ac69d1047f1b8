"""The routing service without HTTP (serving/service.py): micro-batches, exploration draws, the
decision log, the encoder check and where the service finds its project."""

import json

import numpy as np
import pytest

from causal_router.serving.store import DecisionStore
from tests.serving.tiny import MODELS, LinearRouter, TinyEncoder


def test_decision_ids_sort_in_the_order_the_decisions_were_made():
    """Ids of one batch (one timestamp) sort by their index in the batch, and later batches after
    earlier ones: the logs' (timestamp, id) order is the order of the decisions."""
    import time

    from causal_router.serving.service import decision_id

    stamp = time.time_ns()
    ids = [decision_id(stamp, i) for i in range(300)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert sorted(ids) == ids and len(set(ids)) == len(ids)
    assert decision_id(stamp + 1, 0) > ids[-1]


def test_exploration_favours_the_challengers_choice_and_logs_its_probability(tmp_path):
    """The canary through the service's own routing code: where the challenger disagrees, its model is
    drawn with the probability the decision log records (explore 0.2, floor 0.02, 3 models: 0.18)."""
    from causal_router.serving.model import ServedModel
    from causal_router.serving.service import RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings

    class Cheapest(LinearRouter):
        def scores(self, X, lam, input_tokens=None):
            return np.tile([1.0, 0.0, -1.0], (len(X), 1))

    def served(challenger):
        return ServedModel("m", "1", list(MODELS), LinearRouter(), (0.0, 100.0), None, "tiny-d4",
                           challenger=challenger, challenger_version="2" if challenger else "")

    class H:
        current = served(Cheapest())

    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        router = RouteService(ServeSettings(explore=0.2, floor=0.02, seed=0), H, store, TinyEncoder(),
                        np.random.default_rng(0))
        prompts = [f"p{i}" for i in range(2000)]
        out = router.handle([RouteItem(prompts, 0.0, 0.2, "r")])[0]
        X = TinyEncoder().encode(prompts)
        champ = LinearRouter().scores(X, 0.0).argmax(1)
        disagree = champ != 0
        assert disagree.mean() > 0.5  # the tiny router prefers model-c at lam 0: the challenger picks model-a
        drawn = np.array([MODELS.index(d["model"]) for d in out])
        prop = np.array([d["propensity"] for d in out])
        to_challenger = disagree & (drawn == 0)
        np.testing.assert_allclose(prop[to_challenger], 0.18)
        assert abs(to_challenger.sum() / disagree.sum() - 0.18) < 0.03
        H.current = served(None)  # without a challenger: model-a gets its ordinary share
        out = router.handle([RouteItem(prompts, 0.0, 0.2, "r2")])[0]
        drawn = np.array([MODELS.index(d["model"]) for d in out])
        assert ((drawn == 0) & disagree).sum() / disagree.sum() < 0.12
    finally:
        store.close()


def test_thompson_exploration_through_the_service_logs_the_probability_it_drew_with(tmp_path):
    """The default strategy: a router with a posterior in which model-b, logged twice, may be the
    best is explored towards model-b far beyond ``explore``, and every decision's propensity is the
    Thompson policy's probability of the drawn model."""
    from causal_router.policy.exploration import ExplorationPolicy
    from causal_router.policy.posterior import ArmPosterior
    from causal_router.serving.model import ServedModel
    from causal_router.serving.service import RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings

    sd = ArmPosterior(np.array([5000.0, 2.0, 5000.0]), 2.0).sd()

    class WithPosterior(LinearRouter):
        def posterior(self, X, lam, input_tokens=None):
            return self.scores(X, lam), sd

    class H:
        current = ServedModel("m", "1", list(MODELS), WithPosterior(), (0.0, 100.0), None, "tiny-d4")

    assert ServeSettings().strategy == "thompson"
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        settings = ServeSettings(explore=0.05, floor=0.01, seed=0)
        router = RouteService(settings, H, store, TinyEncoder(), np.random.default_rng(0))
        prompts = [f"p{i}" for i in range(2000)]
        out = router.handle([RouteItem(prompts, 0.0, 0.05, "r")])[0]
        X = TinyEncoder().encode(prompts)
        S = WithPosterior().scores(X, 0.0)
        P = ExplorationPolicy(0.05, 0.01, strategy="thompson", posterior_scale=settings.posterior_scale
                              ).probabilities(S, posterior=(S, sd))
        drawn = np.array([MODELS.index(d["model"]) for d in out])
        np.testing.assert_allclose([d["propensity"] for d in out], P[np.arange(2000), drawn])
        logged = store.frame("decisions").set_index("decision_id").loc[[d["decision_id"] for d in out]]
        from causal_router.data.schema import propensity_matrix

        np.testing.assert_allclose(propensity_matrix(logged, MODELS), P, rtol=1e-12, atol=1e-15)
        off = 1 - P[np.arange(2000), S.argmax(1)]
        assert off.min() >= 0.05 - 1e-12 and off.mean() > 0.1  # at least explore, more where unsure
        assert abs((drawn != S.argmax(1)).mean() - off.mean()) < 0.03
    finally:
        store.close()


class _Holder:
    """What the service reads of a ModelHolder: the current model (no registry, no polling)."""

    def __init__(self, model):
        self.current = model
        self._on_change = None


def _served(tokens_per_char=None, encoder_key="tiny-d4"):
    from causal_router.serving.model import ServedModel

    return ServedModel("m", "1", list(MODELS), LinearRouter(), (0.0, 100.0), tokens_per_char, encoder_key)


def test_a_batch_routes_each_request_as_it_would_alone(tmp_path):
    """One scoring pass per group of requests (same lambda and exploration rate) changes nothing: each
    request gets the decisions, propensities and logged probability vectors it gets when handled on its
    own with the same random stream; a request with a lambda outside the interval fails alone."""
    from causal_router.serving.model import ServedModel
    from causal_router.serving.service import BadRequest, RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings

    class H:
        current = ServedModel("m", "1", list(MODELS), LinearRouter(), (0.0, 100.0), 0.25, "tiny-d4")

    def items():
        return [RouteItem([f"a{i}", f"b{i}"] if i % 3 == 0 else [f"c{i}"], [0.0, 50.0, 100.0][i % 3],
                          [0.1, 0.3][i % 2], f"r{i}") for i in range(12)] + [RouteItem(["bad"], 500.0, 0.1, "x")]

    def service(name):
        store = DecisionStore(f"sqlite:///{tmp_path / name}")
        return RouteService(ServeSettings(explore=0.1, seed=0), H, store, TinyEncoder(),
                            np.random.default_rng(7)), store

    batched, store_b = service("b.db")
    together = batched.handle(items())
    alone_svc, store_a = service("a.db")
    alone = []
    for it in items():
        alone_svc.counts = {}  # the batch's requests all see the counts from before the batch
        alone.append(alone_svc.handle([it])[0])
    assert isinstance(together[-1], BadRequest) and isinstance(alone[-1], BadRequest)
    strip = lambda outs: [[{k: v for k, v in d.items() if k != "decision_id"} for d in o] for o in outs]  # noqa: E731
    assert strip(together[:-1]) == strip(alone[:-1])
    cols = ["request_id", "prompt", "model", "propensity", "lam", "explore", "input_tokens", "propensities"]
    log_b = store_b.frame("decisions").sort_values("prompt")[cols].reset_index(drop=True)
    log_a = store_a.frame("decisions").sort_values("prompt")[cols].reset_index(drop=True)
    assert len(log_b) == 16
    for c in cols[:-1]:
        assert log_b[c].tolist() == log_a[c].tolist(), c
    # the vectors agree to the last bits (a batch's arithmetic runs over more rows at once); each is exactly
    # the one its decision was drawn from
    for vb, va in zip(log_b["propensities"], log_a["propensities"]):
        assert json.loads(vb) == pytest.approx(json.loads(va), rel=1e-12, abs=1e-15)


def test_the_decision_log_holds_whole_input_tokens(tmp_path):
    """The service estimates a prompt's input tokens from its length (tokens per character): the log
    holds a count, rounded, as logs and price sheets have them, not the fraction."""
    from causal_router.serving.service import RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings

    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        service = RouteService(ServeSettings(seed=0), _Holder(_served(0.3)), store, TinyEncoder(),
                               np.random.default_rng(0))
        prompts = ["abcde", "x" * 11, "y" * 1001]
        service.handle([RouteItem(prompts, 1.0, 0.1, "r")])
        logged = store.frame("decisions").sort_values("decision_id")["input_tokens"].tolist()
        assert logged == [round(len(p) * 0.3) for p in prompts] == [2, 3, 300]
        assert all(float(t).is_integer() for t in logged)
    finally:
        store.close()


def test_an_encoder_the_router_was_not_trained_on_is_refused_at_load_and_on_reload(tmp_path):
    from causal_router.features.encoders import EncoderMismatchError
    from causal_router.serving.service import build_service
    from causal_router.serving.settings import ServeSettings

    class Other(TinyEncoder):
        key = "other-encoder"

    settings = ServeSettings(decisions_uri=f"sqlite:///{tmp_path / 'd.db'}", root=str(tmp_path))
    with pytest.raises(EncoderMismatchError, match="m version 1 was trained on features of encoder 'tiny-d4', "
                       "not 'other-encoder'"):
        build_service(settings, holder=_Holder(_served()), encoder=Other())
    # serve.encoder (module:callable) goes through the one resolution and the same check
    holder = _Holder(_served())
    settings.encoder = "tests.serving.tiny:TinyEncoder"
    service = build_service(settings, holder=holder)
    try:
        assert service.encoder.key == "tiny-d4"
        with pytest.raises(EncoderMismatchError):  # a reload to a model of other features is refused
            holder._on_change(_served(encoder_key="other-encoder"))
    finally:
        service.store.close()


def test_the_default_decision_log_is_the_projects_from_any_folder_inside_it(tmp_path, monkeypatch):
    """No root and no decisions URI: the log is <project>/decisions/decisions.db, the project found from
    the current folder (as every other command finds it), not ./decisions under a subfolder."""
    from causal_router.serving.service import build_service
    from causal_router.serving.settings import ServeSettings

    project = tmp_path / "project"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / "params.yaml").write_text("serve: {}\n")
    monkeypatch.chdir(project / "notebooks" / "deep")
    monkeypatch.delenv("CAUSAL_ROUTER_DECISIONS_URI", raising=False)
    service = build_service(ServeSettings(), holder=_Holder(_served()), encoder=TinyEncoder())
    try:
        assert service.store.uri == f"sqlite:///{project.resolve() / 'decisions' / 'decisions.db'}"
        assert not (project / "notebooks" / "deep" / "decisions").exists()
    finally:
        service.store.close()


def test_prepare_then_commit_equals_handle_and_a_failed_commit_leaves_the_counts(tmp_path):
    """The micro-batcher's two stages (prepare, then commit in another thread, overlapping the next batch's
    prepare) give the decisions handle gives: same models and propensities from the same random stream,
    the same exploration counts; a commit that fails takes its batch back out of the counts."""
    from causal_router.serving.model import ServedModel
    from causal_router.serving.service import RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings
    from causal_router.serving.store import StoreUnavailable

    class H:
        current = ServedModel("m", "1", list(MODELS), LinearRouter(), (0.0, 100.0), None, "tiny-d4")

    def service(name):
        store = DecisionStore(f"sqlite:///{tmp_path / name}")
        return RouteService(ServeSettings(explore=0.3, seed=0), H, store, TinyEncoder(), np.random.default_rng(0))

    batches = [[RouteItem([f"p{b}-{i}" for i in range(k)], 1.0, 0.3, f"r{b}") for k in (1, 3)] for b in range(4)]
    one, two = service("one.db"), service("two.db")
    handled = [one.handle(items) for items in batches]
    prepared = [two.prepare(batches[0])]
    piped = []
    for items in batches[1:]:
        prepared.append(two.prepare(items))  # the next batch's work before the previous batch's commit
        piped.append(two.commit(prepared.pop(0)))
    piped.append(two.commit(prepared.pop(0)))
    strip = lambda res: [[(d["model"], d["propensity"]) for d in out] for out in res]  # noqa: E731
    assert [strip(r) for r in piped] == [strip(r) for r in handled]
    assert two.counts == one.counts == two.store.counts_by_model()
    before = dict(two.counts)
    pending = two.prepare(batches[0])
    assert sum(two.counts.values()) == sum(before.values()) + 4

    def unavailable(rows):
        raise StoreUnavailable("gone")

    two.store.add_decisions = unavailable
    with pytest.raises(StoreUnavailable):
        two.commit(pending)
    assert two.counts == before
    one.store.close(), two.store.close()
