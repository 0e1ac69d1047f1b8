"""The ``loop`` flow (a simulated deployment, round by round): see :mod:`causal_router.loop.flow`.

Run: ``causal-router loop TABLE --rounds R --batch N --incumbent cost-biased:3 --explore E --lam LAM
--seed S --out DIR``.
"""

from causal_router.loop.flow import loop_flow

__all__ = ["loop_flow"]



def main(argv: list | None = None) -> int:
    """``python -m flows.loop --help``: the loop flow runs through ``causal-router loop``."""
    from causal_router.pipeline import entry

    entry.parser("python -m flows.loop", __doc__, params=False).parse_args(argv)
    print("the loop flow runs through `causal-router loop` (see `causal-router loop --help`)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
