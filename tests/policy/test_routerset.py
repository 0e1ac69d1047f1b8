"""RouterSet: a trained set of routers survives a save/load round trip unchanged."""

import json

import numpy as np
import pytest
import torch

from causal_router.data.synthetic import make_synthetic
from causal_router.policy.data import build_routing_data
from causal_router.policy.routerset import MANIFEST, PAYLOAD, RouterSet
from causal_router.policy.training import DEFAULT_METHODS, fit_routers

LAMS = [0.0, 1000.0, 2000.0]
SMALL = dict(epochs=3, hidden=16, batch_size=256)


@pytest.fixture(scope="module")
def trained():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = make_synthetic(n=1500, d=4, n_models=3, confounding=2.0, separation=4.0, seed=5)
        tr, va, te = s.subset(np.arange(800)), s.subset(np.arange(800, 1100)), s.subset(np.arange(1100, 1500))
        data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
        params = {"rm-softmax": SMALL, "rm-classification": SMALL, "random": {"random_state": 0},
                  "rm-interval": dict(SMALL, finetune_epochs=2)}
        routers, seconds = fit_routers(data, LAMS, params=params)
    finally:
        torch.set_num_threads(before)
    rs = RouterSet(models=list(s.models), lambdas=LAMS, routers=routers, encoder_key="synthetic-d4",
                   meta={"seconds": seconds, "clip": data.clip_report.to_records()})
    return rs, te


def test_round_trip_gives_identical_predictions(trained, tmp_path):
    rs, te = trained
    d = rs.save(tmp_path / "set")
    assert (d / MANIFEST).exists() and (d / PAYLOAD).exists()
    loaded = RouterSet.load(d)
    assert loaded.models == rs.models and loaded.lambdas == rs.lambdas
    assert loaded.encoder_key == "synthetic-d4"
    assert list(loaded.routers) == list(DEFAULT_METHODS)
    tin = te.logs["input_tokens"].to_numpy(float)
    for name in DEFAULT_METHODS:
        a, b = rs.get(name), loaded.get(name)
        assert type(a) is type(b) and a.get_params() == b.get_params()
        for lam in (0.0, 700.0, 2000.0):
            np.testing.assert_array_equal(a.scores(te.X, lam, tin), b.scores(te.X, lam, tin))
            np.testing.assert_array_equal(a.predict(te.X, lam, tin), b.predict(te.X, lam, tin))
            np.testing.assert_array_equal(a.predict_proba(te.X, lam, tin), b.predict_proba(te.X, lam, tin))


def test_saved_bytes_depend_only_on_the_values(trained, tmp_path):
    """DVC hashes the saved set: the same routers give the same bytes however the objects were made
    (fitted here, loaded from disk, or unpickled from a task result as the flow's endpoints are)."""
    import cloudpickle

    rs, _ = trained
    first = (rs.save(tmp_path / "a") / PAYLOAD).read_bytes()
    assert (rs.save(tmp_path / "b") / PAYLOAD).read_bytes() == first
    assert (RouterSet.load(tmp_path / "a").save(tmp_path / "c") / PAYLOAD).read_bytes() == first
    copied = RouterSet(rs.models, rs.lambdas, cloudpickle.loads(cloudpickle.dumps(rs.routers)), rs.encoder_key, rs.meta)
    assert (copied.save(tmp_path / "d") / PAYLOAD).read_bytes() == first
    # and they follow the values: one network weight nudged, other bytes
    nudged = cloudpickle.loads(cloudpickle.dumps(rs.routers))
    net = next(n for n in nudged["rm-softmax"].nets_ if n is not None)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 1e-6
    other = RouterSet(rs.models, rs.lambdas, nudged, rs.encoder_key, rs.meta)
    assert (other.save(tmp_path / "e") / PAYLOAD).read_bytes() != first


def test_manifest_is_readable_json(trained, tmp_path):
    rs, _ = trained
    d = rs.save(tmp_path / "m")
    manifest = json.loads((d / MANIFEST).read_text())
    assert manifest["methods"] == list(DEFAULT_METHODS)
    assert manifest["models"] == rs.models and manifest["lambdas"] == LAMS
    # wall times live beside the manifest, so that the manifest (and DVC's hash of the set) is reproducible
    assert "seconds" not in manifest["meta"] and "clip" in manifest["meta"]
    assert set(json.loads((d / "timings.json").read_text())["seconds"]) == set(DEFAULT_METHODS)
    assert set(RouterSet.load(d).meta["seconds"]) == set(DEFAULT_METHODS)
    assert RouterSet.load(d).meta["clip"][0]["model"] == "model-0"


def test_load_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a trained router set"):
        RouterSet.load(tmp_path / "nothing")


def test_get_unknown_method_names_available(trained):
    rs, _ = trained
    with pytest.raises(KeyError) as err:
        rs.get("nope")
    assert "rm-softmax" in str(err.value)
