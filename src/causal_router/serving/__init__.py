"""The routing service (``causal-router serve``) and the ingest that turns its decisions into logs.

Modules: :mod:`.app` (FastAPI service; the exploring policy it serves is
:mod:`causal_router.policy.exploration`), :mod:`.store` (decision log), :mod:`.batching`
(micro-batching), :mod:`.model` (registry loading and reloads), :mod:`.settings` (``params.yaml``'s
``serve`` section), :mod:`.ingest` (decisions -> logs). Nothing is imported here: ``import
causal_router.serving`` stays cheap.
"""
