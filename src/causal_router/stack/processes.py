"""Processes of the stack: finding tools, loopback ports, waiting for readiness, stopping a
recorded process group without ever signalling a process the stack did not start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path


class StackError(RuntimeError):
    """A service failed to start or become ready; the message carries the end of its log."""


def tool(name: str) -> str:
    """A console script from this interpreter's environment first, else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} not found (looked in {here.parent} and PATH)")
    return found


def pg_tool(name: str) -> str:
    """A PostgreSQL server binary from PATH, else Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if candidates:
        return str(candidates[-1])
    raise StackError(f"PostgreSQL's {name} not found: install the server package (Debian: apt-get install postgresql)")


def port_free(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time), None when the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def wait(check, timeout: float, what: str, log: Path | None = None, pid: int | None = None) -> None:
    """Poll ``check`` until true; StackError with the end of ``log`` after ``timeout`` s or when
    ``pid`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and start_time(pid) is None:
            break
        time.sleep(0.5)
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    raise StackError(f"{what} not ready after {timeout:.0f}s" + (f"; end of {log}:\n{tail}" if tail else ""))


def stop_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by ``pid`` (the service and its children), SIGKILL after ``timeout``."""
    start = start_time(pid)
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if start_time(pid) != start and not group_alive(pid):
                return
            time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of our own group still answer signal 0: look for a live member
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
