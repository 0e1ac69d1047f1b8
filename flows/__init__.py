"""Prefect flows: thin orchestration of the stage functions in ``causal_router.pipeline``."""
