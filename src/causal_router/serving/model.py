"""The router the service answers with: loaded from the MLflow registry, reloaded when its alias moves."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from ..registry.names import parse_model_uri, resolve_version

log = logging.getLogger(__name__)


def _current_version(uri: str) -> str:
    """The registered version ``uri`` points at now (:func:`causal_router.registry.names.resolve_version`;
    a pinned ``models:/NAME/VERSION`` without asking the store)."""
    from ..registry.tracking import client

    pinned = parse_model_uri(uri)[2]
    return pinned if pinned is not None else str(resolve_version(client(), uri).version)


@dataclass
class ServedModel:
    """One loaded registered router.

    Attributes
    ----------
    name : str              registered model name
    version : str           registered version
    models : list of str (K,)
    router : fitted router (``scores(X, lam, input_tokens) -> (n, K)``)
    lam_range : (float, float)  the lambdas this router answers
    tokens_per_char : float or None
    encoder_key : str
    encoder_path : str      local encoder folder of the model config ('' = default encoder)
    challenger : fitted router or None   a challenger whose choices the exploration favours
    challenger_version : str             its registered version ('' = none)
    rows_per_model : dict or None        logged rows per model it was trained on (None: not recorded)
    """

    name: str
    version: str
    models: list
    router: object
    lam_range: tuple
    tokens_per_char: float | None
    encoder_key: str
    encoder_path: str = ""
    challenger: object = None
    challenger_version: str = ""
    rows_per_model: dict | None = None

    def scores(self, X: np.ndarray, lam: float, input_tokens=None) -> np.ndarray:
        """Router scores, shape (n, K), for features X (n, d)."""
        return np.asarray(self.router.scores(X, lam, input_tokens), dtype=float)

    def posterior(self, X: np.ndarray, lam: float, input_tokens=None):
        """The router's (mean (n, K), sd (K,)) utility posterior, or None (Thompson exploration)."""
        fn = getattr(self.router, "posterior", None)
        return None if fn is None else fn(X, lam, input_tokens)

    def challenger_choice(self, X: np.ndarray, lam: float, input_tokens=None) -> np.ndarray | None:
        """The challenger's choices (n,) (indices into ``models``), or None without a challenger."""
        if self.challenger is None:
            return None
        return np.asarray(self.challenger.scores(X, lam, input_tokens), dtype=float).argmax(1)

    def with_challenger(self, other: ServedModel | None) -> ServedModel:
        """This model with ``other``'s router as its challenger (None, the same version, or another
        model list: no challenger)."""
        from dataclasses import replace

        if other is None or other.version == self.version or list(other.models) != list(self.models):
            return replace(self, challenger=None, challenger_version="")
        return replace(self, challenger=other.router, challenger_version=str(other.version))


def load_served(uri: str, version: str | None = None) -> ServedModel:
    """Load the pyfunc at ``uri`` (pinned to ``version`` when given, so that the version recorded
    with each decision is the one that made it)."""
    from ..registry.artifacts import load_model
    from ..registry.pyfunc import INTERVAL_METHOD
    from ..registry.tracking import ensure_configured

    ensure_configured()
    name, _, _ = parse_model_uri(uri)
    version = version or _current_version(uri)
    pyfunc = load_model(f"models:/{name}/{version}")  # a missing artifact is named with its version and path
    inner = pyfunc.unwrap_python_model()
    rs, cfg = inner.routerset, inner.config
    method = cfg.get("method", INTERVAL_METHOD)
    grid = sorted(float(x) for x in rs.lambdas)
    if method == INTERVAL_METHOD:
        lam_range = (grid[0], grid[-1])
    else:  # an endpoint model answers its own lambda
        lam = float(cfg.get("lam", grid[0]))
        lam_range = (lam, lam)
    return ServedModel(name=name, version=str(version), models=list(rs.models), router=rs.get(method),
                       lam_range=lam_range, tokens_per_char=rs.meta.get("tokens_per_char"),
                       encoder_key=rs.encoder_key or "", encoder_path=str(cfg.get("encoder_path") or ""),
                       rows_per_model=rs.meta.get("rows_per_model"))


class ModelHolder:
    """The current :class:`ServedModel`, swapped atomically when the URI's alias moves.

    Parameters
    ----------
    uri : str
        ``models:/NAME@ALIAS`` or ``models:/NAME`` (the newest version; both polled) or
        ``models:/NAME/VERSION`` (fixed); :mod:`causal_router.registry.names` has the rule.
    poll_seconds : float
        How often the alias is resolved again (<= 0: never).
    loader : callable(uri, version) -> ServedModel
        Injected in tests.
    on_change : callable(ServedModel) or None
        Called after each reload (e.g. to check the encoder).
    """

    def __init__(self, uri: str, poll_seconds: float = 10.0, loader=load_served, on_change=None,
                 challenger_alias: str | None = None):
        name, alias, _ = parse_model_uri(uri)
        self.uri = uri
        self.poll_seconds = float(poll_seconds)
        self._loader = loader
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = None
        # the challenger rides along only beside a moving alias (a pinned version is a fixed deployment)
        self._challenger_uri = f"models:/{name}@{challenger_alias}" if challenger_alias and alias else None
        self.current: ServedModel = self._attach(loader(uri, None), self._challenger_version())
        if on_change is not None:
            on_change(self.current)

    def _challenger_version(self) -> str | None:
        if self._challenger_uri is None:
            return None
        try:
            return _current_version(self._challenger_uri)
        except Exception:  # no challenger registered (yet): explore as usual
            return None

    def _attach(self, model: ServedModel, version: str | None) -> ServedModel:
        if version is None or version == model.version:
            return model.with_challenger(None) if getattr(model, "challenger", None) is not None else model
        try:
            return model.with_challenger(self._loader(self._challenger_uri, version))
        except Exception:
            log.exception("could not load the challenger %s; exploring without it", self._challenger_uri)
            return model.with_challenger(None)

    def check(self) -> bool:
        """Reload if the alias (or the challenger's) points elsewhere; True when the model changed."""
        version, challenger = _current_version(self.uri), self._challenger_version()
        if challenger == version:
            challenger = None
        if version == self.current.version and (challenger or "") == self.current.challenger_version:
            return False
        base = self.current if version == self.current.version else self._loader(self.uri, version)
        new = self._attach(base, challenger)
        if self._on_change is not None:
            self._on_change(new)
        old, self.current = self.current, new
        if old.version != new.version:
            log.warning("%s moved: now serving %s version %s (was %s)", self.uri, new.name, new.version, old.version)
        if old.challenger_version != new.challenger_version:
            log.warning("%s: exploring towards challenger version %s", self.uri, new.challenger_version or "(none)")
        return True

    def start(self) -> None:
        if self.poll_seconds <= 0 or parse_model_uri(self.uri)[2] is not None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="causal-router-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:  # keep serving the loaded version; say why in the log
                log.exception("could not reload %s; still serving version %s", self.uri, self.current.version)
