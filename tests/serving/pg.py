"""A throwaway PostgreSQL server for tests: the machine's initdb/pg_ctl in a temporary folder on a
free loopback port (run as the ``postgres`` user when the tests run as root, which PostgreSQL refuses)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def find_binaries() -> dict | None:
    """Paths of initdb and pg_ctl: PATH first, then the Debian layout /usr/lib/postgresql/*/bin."""
    out = {}
    for name in ("initdb", "pg_ctl"):
        path = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                          None)
        if path is None:
            return None
        out[name] = path
    return out


def why_unavailable() -> str | None:
    """None when a server can be started here, else the reason (printed with the skip)."""
    if find_binaries() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under "
                "/usr/lib/postgresql/*/bin: install the distribution's postgresql package")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb/pg_ctl as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


class PostgresServer:
    """``with PostgresServer() as pg: pg.uri`` -> ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``."""

    def __enter__(self):
        bins = find_binaries()
        self.dir = tempfile.mkdtemp(prefix="causal-router-pg-", dir="/tmp")
        as_root = os.geteuid() == 0
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = os.path.join(self.dir, "data")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run([bins["initdb"], "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"])
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self.pg_ctl = bins["pg_ctl"]
        self._run([self.pg_ctl, "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "-t", "60",
                   "start"])
        self.uri = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._wait()
        return self

    def _run(self, cmd):
        subprocess.run(self.prefix + cmd, check=True, capture_output=True, timeout=120)

    def _wait(self):
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __exit__(self, *exc):
        try:
            self._run([self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
