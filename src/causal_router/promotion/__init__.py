"""The promotion gate: whether a challenger router may replace the champion (:mod:`.gate`).

Above ``causal/``, ``policy/`` and ``evaluation/``, below ``registry/``, ``pipeline/``, ``serving/``
and ``loop/``: it decides on routers and held-out evidence it is given, and never touches MLflow.
"""
