"""Prefect's temporary server, tied to the life of the process that started it.

With no ``PREFECT_API_URL``, a flow run starts Prefect's temporary server as a child process and
stops it at exit. A flow killed with ``kill -9`` runs no exit handler, so that server would outlive
it. :func:`temporary_server` starts the same server first, from the main thread, with the kernel's
parent-death signal set (Linux ``PR_SET_PDEATHSIG``): when this process dies, however it dies, the
server gets SIGTERM and shuts down. Prefect then finds it already running and uses it.

Elsewhere (a configured API URL, temporary servers disabled, or not Linux) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

__all__ = ["temporary_server"]

_PR_SET_PDEATHSIG = 1
# Prefect's 20 s default is too short for a first start (database migrations) on a loaded machine
DEFAULT_STARTUP_TIMEOUT_S = 120
_lock = threading.Lock()


def _tied_popen(popen):
    """``subprocess.Popen`` whose child gets SIGTERM when the calling thread's process dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork, not in the child
    parent = os.getpid()

    def die_with_parent():
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    def tied(*args, **kwargs):
        return popen(*args, preexec_fn=die_with_parent, **kwargs)

    return tied


def _server_class():
    from prefect.server.api import server as module

    class TiedServer(module.SubprocessASGIServer):
        """Prefect's temporary server, started with the parent-death signal set."""

        def _run_uvicorn_command(self):
            # the same command as Prefect's, through a Popen that adds the signal; only this module's
            # name for `subprocess` changes, for the length of the call
            real = module.subprocess
            module.subprocess = type("subprocess", (), {"Popen": staticmethod(_tied_popen(real.Popen))})
            try:
                return super()._run_uvicorn_command()
            finally:
                module.subprocess = real

    return module.SubprocessASGIServer, TiedServer


def _wanted() -> bool:
    from prefect.settings import get_current_settings

    s = get_current_settings()
    return (sys.platform.startswith("linux") and not s.api.url and s.server.ephemeral.enabled
            and threading.current_thread() is threading.main_thread())


@contextlib.contextmanager
def temporary_server():
    """Run the body with Prefect's temporary server started and tied to this process (see the module)."""
    if not _wanted():
        yield None
        return
    from prefect.settings import get_current_settings

    with _lock:
        base, tied_cls = _server_class()
        current = base._instances.get(None)  # the instance Prefect's get_client() will ask for
        if current is None or not current.running:
            base._instances.pop(None, None)
            current = tied_cls()  # registered under the same key: Prefect gets this one
            timeout = get_current_settings().server.ephemeral.startup_timeout_seconds
            if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
                timeout = max(timeout, DEFAULT_STARTUP_TIMEOUT_S)
            current.start(timeout=timeout)
    try:
        yield current
    finally:
        if isinstance(current, tied_cls):
            current.stop()
