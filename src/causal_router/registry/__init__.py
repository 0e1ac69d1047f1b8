"""MLflow side of causal-router: tracking store, pyfunc router, training runs, promotion, lineage.

- :mod:`.tracking`  ``configure()``: SQLite store under ``mlruns/`` with file artifacts, experiment.
- :mod:`.pyfunc`    ``RouterModel`` (prompts in, chosen model out, ``lam`` per request) and ``log_router_model``.
- :mod:`.runs`      ``log_training_run`` (params, regret curves, reports) and ``register_routers``
  (``causal-router-endpoint-<lam>``, ``causal-router-interval``, alias ``challenger``).
- :mod:`.promote`   ``promote``: evidence-gated move of ``champion`` (DR value on held-out logs).
- :mod:`.lineage`   ``collect_lineage`` (git commit, DVC hashes) and ``describe`` / ``format_lineage``.
- :mod:`.integrity` the store's schema check, expected-state marker (champions it must still hold), promotion lock.
- :mod:`.artifacts` ``load_model``: a version whose artifacts are gone is named with the missing path.
- :mod:`.recovery`  signals during registration, and clean-up after a killed training run.

Nothing is imported or configured at package import; import the submodules.
"""
