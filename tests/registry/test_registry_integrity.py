"""A damaged, emptied or replaced tracking store is an error, never a fresh start; promotions take turns.

Real MLflow on a SQLite store under tmp_path: a champion is promoted, then the database is emptied,
replaced by garbage, by a foreign SQLite file or by an empty MLflow store, or loses its champion.
"""

import shutil
import sqlite3
import threading
import time

import mlflow
import pytest
from typer.testing import CliRunner

from causal_router.errors import CausalRouterError, StoreDamagedError
from causal_router.registry import integrity, tracking
from causal_router.registry.promote import promote
from causal_router.registry.pyfunc import log_router_model

NAME = "causal-router-interval"


def add_version(routerset_dir, method, alias="challenger"):
    with mlflow.start_run():
        info = log_router_model(routerset_dir, f"router-{method}", method, registered_model_name=NAME)
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(NAME, alias, version)
    return version


def holdout(problem):
    return problem["holdout"].logs, problem["holdout"].X


@pytest.fixture
def with_champion(store, routerset_dir, problem):
    """A store whose first challenger became champion through the gate (the marker records it)."""
    v = add_version(routerset_dir, "rm-interval")
    assert promote(NAME, *holdout(problem)).promoted
    return store, v


def reopen(root):
    """A new process's first look at the store."""
    tracking._state.update(uri=None, experiment_id=None)
    return tracking.configure(root)


def test_first_champion_of_a_fresh_store_is_recorded(with_champion):
    root, v = with_champion
    uri = tracking.tracking_uri(root)
    assert integrity.marker_path(uri) == root / "mlruns" / "mlflow.db.expected.json"
    assert integrity.read_expected(uri) == {NAME: v}
    assert reopen(root) == uri  # an intact store opens as before


def test_emptied_store_that_had_a_champion_is_an_error(with_champion, routerset_dir, problem):
    """The issue's reproduction: `: > mlruns/mlflow.db`, then train and promote."""
    root, v = with_champion
    db = root / "mlruns" / "mlflow.db"
    db.write_bytes(b"")
    with pytest.raises(StoreDamagedError, match=r"empty file \(0 bytes\).*causal-router-interval v1"):
        reopen(root)
    assert db.stat().st_size == 0  # not silently re-created
    db.unlink()
    with pytest.raises(StoreDamagedError, match="is missing"):
        reopen(root)
    assert not db.exists()


def test_store_that_lost_its_champion_is_an_error_and_promotes_nothing(with_champion, routerset_dir, problem,
                                                                       template_db):
    root, v = with_champion
    client = mlflow.MlflowClient()
    new = add_version(routerset_dir, "best-single")
    client.delete_registered_model_alias(NAME, "champion")  # the champion vanished
    with pytest.raises(StoreDamagedError, match="has no champion for causal-router-interval"):
        promote(NAME, *holdout(problem))
    aliases = client.get_registered_model(NAME).aliases
    assert "champion" not in aliases and aliases["challenger"] == int(new)  # nothing moved without evidence
    # a store replaced by an empty MLflow store (valid schema, nothing in it)
    shutil.copy(template_db, root / "mlruns" / "mlflow.db")
    with pytest.raises(StoreDamagedError, match="has no champion"):
        reopen(root)
    # removing the models on purpose: delete the marker to accept the store as it is
    integrity.marker_path(tracking.tracking_uri(root)).unlink()
    reopen(root)


def foreign_sqlite(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()


def truncated_mlflow(path):
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\x00garbage" * 512)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"this is not a database\n" * 100), "is not an SQLite database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000), "cannot be read|integrity check"),
    (truncated_mlflow, "cannot be read|integrity check"),
    (lambda p: (p.unlink(), foreign_sqlite(p)), "is not an MLflow database"),
], ids=["garbage", "bad-pages", "truncated", "foreign-schema"])
def test_malformed_database_is_an_error_even_without_a_champion(store, damage, message):
    """No marker needed: a file that is not MLflow's database never reads as an empty store."""
    db = store / "mlruns" / "mlflow.db"
    damage(db)
    size = db.stat().st_size
    with pytest.raises(StoreDamagedError, match=message):
        reopen(store)
    assert db.stat().st_size == size
    assert issubclass(StoreDamagedError, CausalRouterError)


def test_an_sqlite_file_without_tables_is_a_fresh_store(store):
    db = store / "mlruns" / "mlflow.db"
    db.unlink()
    foreign_sqlite(db)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE notes")
    con.commit()
    con.close()
    assert integrity.check_schema(tracking.tracking_uri(store)) == "fresh"
    reopen(store)  # opens as a new store


def test_a_store_with_champions_but_no_marker_gets_one(store, routerset_dir):
    v = add_version(routerset_dir, "rm-interval", alias="champion")  # set by hand, before markers existed
    uri = tracking.tracking_uri(store)
    assert integrity.read_expected(uri) == {}
    reopen(store)
    assert integrity.read_expected(uri) == {NAME: v}


def test_cli_reports_a_damaged_store_in_one_line(with_champion):
    from causal_router.cli import app

    root, _ = with_champion
    (root / "mlruns" / "mlflow.db").write_bytes(b"")
    tracking._state.update(uri=None, experiment_id=None)
    out = CliRunner().invoke(app, ["lineage", f"models:/{NAME}@champion", "--root", str(root)])
    assert out.exit_code == 1
    assert "emptied, replaced or damaged" in out.output and "Traceback" not in out.output


def test_flow_entry_points_stop_before_running(with_champion, monkeypatch, capsys):
    """`python -m flows.train` and `python -m flows.promote` on an emptied store: one error line, exit 1,
    and neither flow starts."""
    import flows.promote
    import flows.train

    root, _ = with_champion
    (root / "mlruns" / "mlflow.db").write_bytes(b"")
    (root / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(root)

    def never(*a, **k):
        raise AssertionError("the flow ran on a damaged store")

    monkeypatch.setattr(flows.train, "with_runner", never)
    monkeypatch.setattr(flows.promote, "promote_flow", never)
    for module in (flows.train, flows.promote):
        tracking._state.update(uri=None, experiment_id=None)
        assert module.main(["params.yaml"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: the MLflow tracking store") and "0 bytes" in err and "Traceback" not in err
    assert (root / "mlruns" / "mlflow.db").stat().st_size == 0


def test_two_concurrent_promotions_leave_one_champion(store, routerset_dir, problem, monkeypatch):
    """Both threads see champion v1 and a better challenger v2; the lock makes the second wait and then
    find v2 already champion (without it both would promote, each against the stale champion)."""
    import causal_router.registry.promote as promote_module

    old = add_version(routerset_dir, "best-single", alias="champion")
    new = add_version(routerset_dir, "rm-interval")
    slow_evidence = promote_module.holdout_evidence

    def slow(*a, **k):  # widen the window between reading the aliases and moving one
        time.sleep(1.0)
        return slow_evidence(*a, **k)

    monkeypatch.setattr(promote_module, "holdout_evidence", slow)
    decisions, errors = [], []
    start = threading.Barrier(2)

    def run():
        try:
            start.wait()
            decisions.append(promote(NAME, *holdout(problem)))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(d.decision for d in decisions) == ["promoted", "skipped"], [d.summary() for d in decisions]
    skipped = next(d for d in decisions if d.decision == "skipped")
    assert skipped.reason == "the challenger is already the champion" and skipped.champion_version == new
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == new
    assert client.get_model_version(NAME, old).tags["promotion.last_challenge.version"] == new
    uri = tracking.tracking_uri(store)
    assert integrity.read_expected(uri) == {NAME: new} and integrity.lock_path(uri).exists()


def _pg():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("pg_server", Path(__file__).parents[1] / "serving" / "pg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_postgres_store_emptied_after_a_champion_is_an_error(tmp_path, monkeypatch):
    """A non-file store: the marker lives under $CAUSAL_ROUTER_STATE_DIR (named by a hash of the URI,
    no password in it); the same table check and expected state apply."""
    import sqlalchemy as sa

    pg = _pg()
    if pg.why_unavailable():
        pytest.skip(pg.why_unavailable())
    monkeypatch.setenv(integrity.STATE_DIR_ENV, str(tmp_path / "state"))
    with pg.PostgresServer() as server:
        uri = server.uri
        assert integrity.check_schema(uri) == "fresh" and integrity.preflight(uri) == {}
        client = mlflow.MlflowClient(uri, uri)
        client.search_experiments()  # MLflow creates its schema
        client.create_registered_model(NAME)
        version = client.create_model_version(NAME, "file:///nowhere", None).version
        client.set_registered_model_alias(NAME, "champion", version)
        assert integrity.verify(uri, client) == {NAME: str(version)}
        marker = integrity.marker_path(uri)
        assert marker.parent == tmp_path / "state" and integrity.read_expected(uri) == {NAME: str(version)}
        engine = sa.create_engine(uri)
        with engine.begin() as con:  # the database emptied
            con.execute(sa.text("DROP SCHEMA public CASCADE"))
            con.execute(sa.text("CREATE SCHEMA public"))
        with pytest.raises(StoreDamagedError, match="holds no tables"):
            integrity.preflight(uri)
        with engine.begin() as con:  # a foreign database under the same URI
            con.execute(sa.text("CREATE TABLE notes (x text)"))
        with pytest.raises(StoreDamagedError, match="is not an MLflow database"):
            integrity.preflight(uri)
        engine.dispose()


def test_two_concurrent_registrations_never_mix_their_challengers(store, routerset_dir, monkeypatch):
    """The first registration pauses after moving its first alias until the second has created its
    versions; the second then waits for the store's lock instead of moving its aliases in between
    (which would leave the challengers of two different runs)."""
    from causal_router.registry.runs import INTERVAL_NAME, endpoint_name, log_training_run, register_routers

    names = (endpoint_name(0.0), INTERVAL_NAME)
    runs = {who: log_training_run(routerset_dir, [], {"who": who}) for who in ("first", "second")}
    real_alias, real_register = mlflow.MlflowClient.set_registered_model_alias, mlflow.register_model
    second_registered, created = threading.Event(), {"second": 0}

    def register(*a, **k):
        mv = real_register(*a, **k)
        if threading.current_thread().name == "second":
            created["second"] += 1
            if created["second"] == len(names):
                second_registered.set()  # its aliases come next
        return mv

    def paused(self, name, alias, version):
        real_alias(self, name, alias, version)
        if threading.current_thread().name == "first" and not second_registered.is_set():
            assert second_registered.wait(120)
            time.sleep(1.5)  # time enough for the second to move both aliases, were it not waiting

    monkeypatch.setattr(mlflow, "register_model", register)
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", paused)
    results, errors = {}, []

    def run(who):
        try:
            if who == "second":
                time.sleep(0.5)  # the first reaches its aliases first
            results[who] = register_routers(runs[who], routerset_dir, [0.0])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(who,), name=who) for who in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    client = mlflow.MlflowClient()
    challengers = {n: str(client.get_model_version_by_alias(n, "challenger").version) for n in names}
    assert challengers == results["second"]  # one run's set, the last to register
    assert {client.get_model_version(n, v).run_id for n, v in challengers.items()} == {runs["second"]}
