"""The registry over time: model descriptions, the promotion gate's own run, retention and rollback.

- :func:`describe_models`: a description on each registered router (what it is, how to call it).
- :func:`log_promotion_run`: one MLflow run per gate: its parameters, every decision with its
  evidence (metrics and ``promotion/decisions.json``), the held-out logs as an input dataset,
  and links both ways (run tags ``version.<name>``, version tags ``promotion.run_id``).
- :func:`prune_versions`: a retention rule: versions that never became champion (no
  ``promotion.decision=promoted`` tag, no alias) beyond the newest ``keep`` are deleted.
- :func:`rollback`: ``champion`` back to the champion before it, the reason recorded as tags.

A version "became champion" when the gate promoted it (``promotion.decision=promoted``, written
by :func:`causal_router.registry.promote.promote`); the order of champions is the order of their
``promotion.timestamp`` tags.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from ..errors import CausalRouterError
from .names import CHAMPION, ENDPOINT_PREFIX, INTERVAL_NAME, flatten_params
from .names import key as _key
from .tracking import client as default_client
from .tracking import ensure_configured

log = logging.getLogger(__name__)

PROMOTED = "promoted"
DEMOTED_TAG = "rollback.demoted"


class RollbackError(CausalRouterError, ValueError):
    """No champion, or no earlier champion to go back to."""


def description(name: str) -> str:
    """What the registered router ``name`` is and how to call it."""
    call = (f'mlflow.pyfunc.load_model("models:/{name}@champion").predict({{"prompt": [...]}}')
    if name == INTERVAL_NAME:
        return ("Interval router: routes each prompt to the LLM maximising quality - lambda * cost, for any lambda "
                "in the training grid's range (RM-Softmax heads interpolated in lambda, trained on doubly robust "
                f"utilities from observational logs). Call: {call}, params={{\"lam\": 7400}}). Aliases: challenger "
                "(newest trained), champion (passed the evidence gate).")
    if name.startswith(ENDPOINT_PREFIX):
        lam = name[len(ENDPOINT_PREFIX):].replace("p", ".")
        return (f"Endpoint router for lambda = {lam}: routes each prompt to the LLM maximising quality - lambda * "
                f"cost (RM-Softmax, trained on doubly robust utilities from observational logs). Call: {call}). "
                "Aliases: challenger, champion.")
    return "causal-router model."


def describe_models(names, client=None) -> None:
    """Set the description of each registered model in ``names`` that has none."""
    c = client or default_client()
    for name in names:
        model = c.get_registered_model(name)
        if not model.description:
            c.update_registered_model(name, description=description(name))


def _all_versions(c, name: str) -> list:
    return sorted(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def prune_versions(name: str, keep: int, client=None, dry_run: bool = False) -> list[str]:
    """Delete the versions of ``name`` that never became champion, except the newest ``keep`` of them.

    Versions holding an alias (``challenger``, ``champion``) and versions the gate promoted are
    never deleted. Returns the deleted version numbers (oldest first).
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    c = client or default_client()
    held = {str(v) for v in (c.get_registered_model(name).aliases or {}).values()}
    never = [v for v in _all_versions(c, name)
             if v.tags.get("promotion.decision") != PROMOTED and str(v.version) not in held]
    doomed = never[: max(0, len(never) - keep)]
    if not dry_run:
        for v in doomed:
            c.delete_model_version(name, v.version)
    if doomed:
        log.info("%s: deleted %d version(s) that never became champion: %s", name, len(doomed),
                 [v.version for v in doomed])
    return [str(v.version) for v in doomed]


def _champion_order(c, name: str) -> list:
    promoted = [v for v in _all_versions(c, name) if v.tags.get("promotion.decision") == PROMOTED]
    return sorted(promoted, key=lambda v: (v.tags.get("promotion.timestamp", ""), int(v.version)))


def rollback(name: str, reason: str, client=None) -> tuple[str, str]:
    """Move ``champion`` of ``name`` back to the previous champion; returns (from, to) versions.

    The previous champion is the latest version the gate promoted before the current champion
    and that was not itself rolled back. Tags record who moved where, when and why: on the
    demoted version ``rollback.demoted=true``, ``rollback.reason``, ``rollback.timestamp``,
    ``rollback.to``; on the restored one ``rollback.restored_from``, ``rollback.reason``,
    ``rollback.timestamp``.

    Raises
    ------
    RollbackError
        No ``champion`` alias, an empty reason, or no earlier champion.
    """
    from . import integrity

    if not reason or not reason.strip():
        raise RollbackError("give the reason for the rollback (--reason)")

    c = client or default_client()
    uri = getattr(c, "_registry_uri", None) or ensure_configured()
    with integrity.promotion_lock(uri):  # never beside a promotion of the same store
        integrity.verify(uri, c)
        moved = _rollback(c, name, reason)
        integrity.record_expected(uri, c)
    return moved


def _rollback(c, name: str, reason: str) -> tuple[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        current = c.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        raise RollbackError(f"{name} has no champion to roll back ({err})") from None
    order = [v for v in _champion_order(c, name) if v.tags.get(DEMOTED_TAG) != "true"]
    versions = [str(v.version) for v in order]
    cut = versions.index(str(current.version)) if str(current.version) in versions else len(versions)
    earlier = [v for v in order[:cut] if str(v.version) != str(current.version)]
    if not earlier:
        raise RollbackError(f"{name}: champion v{current.version} has no earlier champion to go back to")
    target = earlier[-1]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    c.set_registered_model_alias(name, CHAMPION, target.version)
    for k, v in {DEMOTED_TAG: "true", "rollback.reason": reason, "rollback.timestamp": now,
                 "rollback.to": str(target.version)}.items():
        c.set_model_version_tag(name, current.version, k, v)
    for k, v in {"rollback.restored_from": str(current.version), "rollback.reason": reason,
                 "rollback.timestamp": now}.items():
        c.set_model_version_tag(name, target.version, k, v)
    c.set_registered_model_tag(name, "rollback.last", json.dumps(
        {"from": str(current.version), "to": str(target.version), "reason": reason, "timestamp": now}))
    log.info("%s: champion v%s -> v%s (%s)", name, current.version, target.version, reason)
    return str(current.version), str(target.version)


def log_promotion_run(decisions: list, params: dict | None = None, holdout_path=None) -> str:
    """One MLflow run recording a gate: parameters, each decision's evidence, links to the versions.

    Parameters
    ----------
    decisions : list of :class:`causal_router.promotion.gate.GateDecision` (from the registry's ``promote``)
    params : dict or None (the ``promote`` section of params.yaml and the clip)
    holdout_path : path of the held-out logs, logged as the run's input dataset (context ``holdout``)

    Returns
    -------
    str : the run id
    """
    import mlflow

    ensure_configured()
    c = default_client()
    with mlflow.start_run(run_name="promotion-gate", nested=mlflow.active_run() is not None) as run:
        run_id = run.info.run_id
        mlflow.set_tags({"causal_router.kind": "promotion"})
        if params:
            mlflow.log_params(flatten_params(params))
        if holdout_path is not None:
            log_dataset(holdout_path, "holdout", context="holdout")
        metrics, counts = {}, {}
        for d in decisions:
            counts[d.decision] = counts.get(d.decision, 0) + 1
            if d.challenger_version:
                mlflow.set_tag(_key(f"version.{d.name}"), d.challenger_version)
                try:
                    c.set_model_version_tag(d.name, d.challenger_version, "promotion.run_id", run_id)
                except Exception:  # the version may have been pruned meanwhile
                    log.warning("could not link %s v%s to the promotion run", d.name, d.challenger_version)
            for label, est in (("challenger", d.challenger), ("champion", d.champion), ("difference", d.difference)):
                if est is not None:
                    metrics[_key(f"{label}_dr/{d.name}")] = float(est.value)
                    metrics[_key(f"{label}_ci_low/{d.name}")] = float(est.ci_low)
            metrics[_key(f"promoted/{d.name}")] = float(bool(d.promoted))
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
        mlflow.set_tags({f"decisions.{k}": str(v) for k, v in counts.items()})
        mlflow.log_dict([d.to_dict() for d in decisions], "promotion/decisions.json")
    return run_id


def log_dataset(path, name: str, context: str = "training") -> None:
    """``mlflow.log_input`` of a log file (parquet, CSV, JSONL) in the active run, its source the path."""
    import warnings
    from pathlib import Path

    import mlflow

    from ..data.loaders import read_frame

    path = Path(path)
    df = read_frame(path)
    with warnings.catch_warnings():  # a local path matches two of MLflow's source types, which resolve alike
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        dataset = mlflow.data.from_pandas(df, source=str(path.resolve()), name=name)
    mlflow.log_input(dataset, context=context)
