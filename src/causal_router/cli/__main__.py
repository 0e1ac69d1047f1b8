"""``python -m causal_router.cli``: the ``causal-router`` command (tests, benchmarks and subprocesses use it)."""

from . import app

app(prog_name="causal-router")
