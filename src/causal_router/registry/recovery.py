"""What a killed training leaves in MLflow, cleaned up: runs marked FAILED, orphan versions deleted.

:func:`~causal_router.registry.runs.register_routers` undoes its own work when it fails by an
exception, Ctrl-C or (under :func:`terminate_on_signals` or :func:`deferred_signals`) SIGTERM: the new
versions are deleted, the aliases put back, the run ends FAILED. The train flow registers under
:func:`deferred_signals`: a signal stops registration at its next safe point, between two store
operations, never inside one. Only ``kill -9`` (or a power cut) gets no chance; the next
registration then calls :func:`recover_interrupted`, which

- marks FAILED every training run still RUNNING whose process is gone (its ``causal_router.host``
  is this machine and its ``causal_router.pid`` no longer exists; a run of another machine is left
  alone, as it may still be running);
- for every FAILED or KILLED training run, puts back the aliases its registration moved (run tag
  ``registration.previous``) and deletes its model versions, except any that is or was champion.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading

log = logging.getLogger(__name__)

__all__ = ["Terminated", "checkpoint", "deferred_signals", "recover_interrupted", "terminate_on_signals"]

TRAINING = "training"
DEAD = ("FAILED", "KILLED")


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM under :func:`terminate_on_signals` (exit code 128 + signal)."""


def _raise_terminated(signum, frame):
    raise Terminated(128 + signum)


@contextlib.contextmanager
def terminate_on_signals(signals=(signal.SIGTERM,)):
    """SIGTERM (by default) raises :class:`Terminated` instead of ending the process at once, so that
    ``finally`` blocks and context managers run: MLflow runs end FAILED, a half-done registration is
    undone, the temporary Prefect server is stopped. SIGINT already raises KeyboardInterrupt. Outside
    the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _raise_terminated) for s in signals}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


_pending: dict = {"signal": None}


def _defer(signum, frame):
    _pending["signal"] = signum
    log.warning("signal %d received: stopping at the next safe point", signum)


def _raise_for(signum):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(128 + signum)


def checkpoint() -> None:
    """Under :func:`deferred_signals`, raise for a signal received so far (a safe point: no store
    operation is half done); otherwise nothing."""
    signum, _pending["signal"] = _pending["signal"], None
    if signum is not None:
        _raise_for(signum)


@contextlib.contextmanager
def deferred_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """Inside, SIGTERM and SIGINT only take note; :func:`checkpoint` acts on them where it is safe, and
    so does leaving the block normally. An exception raised inside a database call would leave a
    half-written SQLite transaction (the store stays locked, the clean-up then fails) and is turned
    into an ordinary error by SQLAlchemy (a retrying task would carry on). Outside the main thread
    this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending["signal"] = None
    before = {s: signal.signal(s, _defer) for s in signals}
    ok = False
    try:
        yield
        ok = True
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if ok:
            checkpoint()
        _pending["signal"] = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _abandoned(run) -> bool:
    """A RUNNING run whose process (on this machine) is gone."""
    tags = run.data.tags
    pid, host = tags.get("causal_router.pid"), tags.get("causal_router.host")
    if not pid or not pid.isdigit() or host != socket.gethostname():
        return False
    return int(pid) != os.getpid() and not _alive(int(pid))


def _training_runs(client, experiment_ids):
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=f"tags.`causal_router.kind` = '{TRAINING}'",
                                  max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def recover_interrupted(client=None, experiment_ids=None) -> dict:
    """Clean up after training runs that were killed (see the module docstring).

    Returns
    -------
    dict with ``failed_runs`` (run ids marked FAILED), ``deleted_versions`` (``"name/version"``) and
    ``restored_aliases`` (``"name@alias -> version"``)
    """
    from mlflow.exceptions import MlflowException

    from .tracking import _state, ensure_configured
    from .tracking import client as default_client

    c = client or default_client()
    if experiment_ids is None:
        ensure_configured()
        experiment_ids = [_state["experiment_id"]]
    out = {"failed_runs": [], "deleted_versions": [], "restored_aliases": []}
    for run in _training_runs(c, experiment_ids):
        status = run.info.status
        if status == "RUNNING" and _abandoned(run):
            c.set_terminated(run.info.run_id, "FAILED")
            out["failed_runs"].append(run.info.run_id)
            status = "FAILED"
            log.warning("training run %s was killed while RUNNING: marked FAILED", run.info.run_id)
        if status not in DEAD:
            continue
        versions = c.search_model_versions(f"run_id = '{run.info.run_id}'")
        if not versions:
            continue
        previous = json.loads(run.data.tags.get("registration.previous") or "{}")
        alias = previous.get("alias")
        for mv in versions:
            aliases = set(getattr(mv, "aliases", None) or [])
            if "champion" in aliases or (mv.tags or {}).get("promotion.decision") == "promoted":
                continue  # it served: never deleted
            before = (previous.get("versions") or {}).get(mv.name)
            if alias and alias in aliases and before:
                try:
                    c.set_registered_model_alias(mv.name, alias, before)
                    out["restored_aliases"].append(f"{mv.name}@{alias} -> {before}")
                except MlflowException:  # that version is gone too
                    log.warning("could not restore %s@%s to v%s", mv.name, alias, before)
            c.delete_model_version(mv.name, mv.version)
            out["deleted_versions"].append(f"{mv.name}/{mv.version}")
            log.warning("deleted %s v%s, registered by the failed run %s", mv.name, mv.version, run.info.run_id)
    return out
