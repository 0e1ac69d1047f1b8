"""The ``loop`` flow (a simulated deployment, round by round): see :mod:`causal_router.loop.flow`.

Run: ``causal-router loop TABLE --rounds R --batch N --incumbent cost-biased:3 --explore E --lam LAM
--seed S --out DIR``.
"""

from causal_router.loop.flow import loop_flow

__all__ = ["loop_flow"]
