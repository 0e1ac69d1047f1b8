"""Named crash points for tests of crash recovery.

``failpoint("embed")`` kills this process with SIGKILL (as ``kill -9`` would: no handler, no
``finally``, no ``atexit``) when ``$CAUSAL_ROUTER_FAILPOINT`` names that point, and does nothing
otherwise. The points sit where a crash is hardest to recover from: after a stage wrote its outputs
but before its result was recorded, and between the store writes of a registration. Tests set the
variable in a subprocess; nothing else should.
"""

from __future__ import annotations

import os
import signal

ENV = "CAUSAL_ROUTER_FAILPOINT"

__all__ = ["ENV", "failpoint"]


def failpoint(name: str) -> None:
    """SIGKILL this process if ``$CAUSAL_ROUTER_FAILPOINT`` equals ``name``."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
