"""The stack's PostgreSQL: ``initdb`` into ``<stack>/pgdata`` on first use, ``pg_ctl`` start and
stop (as the ``postgres`` user when the stack runs as root: PostgreSQL refuses root), and the
databases ``mlflow``, ``prefect`` and ``decisions``."""

from __future__ import annotations

import shutil
import subprocess

from .processes import StackError, pg_tool, port_open, wait

DATABASES = ("mlflow", "prefect", "decisions")


def as_pg(stack, argv: list) -> list:
    return ["runuser", "-u", "postgres", "--", *argv] if stack.as_postgres else argv


def start_postgres(stack, timeout: float, dir_env: str) -> None:
    """initdb when ``stack.pgdata`` is empty, start the server unless it runs, create the databases.
    ``dir_env`` names the variable that moves the stack's folder (for the error message)."""
    port = stack.ports()["postgres"]
    log = stack.log("postgres")
    pgdata = stack.pgdata
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if stack.as_postgres:
            shutil.chown(pgdata, "postgres", "postgres")
        pgdata.chmod(0o700)
        out = subprocess.run(as_pg(stack, [pg_tool("initdb"), "-D", str(pgdata), "-A", "trust",
                                           "-U", "postgres", "-E", "UTF8"]),
                             capture_output=True, text=True)
        if out.returncode:
            raise StackError(f"initdb failed in {pgdata} (is every folder above it readable by the "
                             f"postgres user? set {dir_env} elsewhere if not):\n{out.stderr[-2000:]}")
    if not stack.alive("postgres"):
        log.touch()
        if stack.as_postgres:
            shutil.chown(log, "postgres", "postgres")
        if not port_open(stack.host, port):  # a stale pid file from an unclean stop
            (pgdata / "postmaster.pid").unlink(missing_ok=True)
        out = subprocess.run(as_pg(stack, [pg_tool("pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w",
                                           "-t", str(int(timeout)), "-o",
                                           f"-p {port} -h {stack.host} -k {pgdata}", "start"]),
                             capture_output=True, text=True)
        if out.returncode:
            raise StackError(f"PostgreSQL did not start: {out.stdout[-1000:]}{out.stderr[-1000:]}\n"
                             + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        stack.save("postgres", pid, port, ["pg_ctl", "-D", str(pgdata), "start"])
    create_databases(stack, timeout)


def create_databases(stack, timeout: float) -> None:
    import psycopg

    port = stack.ports()["postgres"]
    conninfo = f"host={stack.host} port={port} user=postgres dbname=postgres"

    def connectable():
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    wait(connectable, timeout, "PostgreSQL", stack.log("postgres"))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for db in DATABASES:
            if db not in have:
                conn.execute(f'CREATE DATABASE "{db}"')


def stop_postgres(stack) -> None:
    """``pg_ctl stop -m fast`` (waits for the server to exit)."""
    subprocess.run(as_pg(stack, [pg_tool("pg_ctl"), "-D", str(stack.pgdata), "-m", "fast", "-w", "stop"]),
                   capture_output=True)
