"""Real PostgreSQL servers (Debian binaries) started with initdb + pg_ctl in temp dirs.

As root the server runs as the ``postgres`` user (Postgres refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.services.common import free_port

BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-pg-pass"


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _chown(path: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass
class PgServer:
    root: str
    port: int

    @property
    def datadir(self) -> str:
        return os.path.join(self.root, "data")

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        subprocess.run(_as_server_user([
            f"{BINDIR}/pg_ctl", "-D", self.datadir, "-l", os.path.join(self.root, "log"),
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "-w", "-t", "120", "start"]), check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_server_user([f"{BINDIR}/pg_ctl", "-D", self.datadir, "-m", mode,
                                        "-w", "-t", "120", "stop"]), capture_output=True)

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster (children exit when it is gone)."""
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            pid = int(f.readline())
        os.kill(pid, 9)
        subprocess.run(["pkill", "-9", "-P", str(pid)], capture_output=True)

    def execute(self, sql: str, db: str = "postgres") -> None:
        with psycopg.connect(self.dsn(db), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[call-overload]

    def createdb(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_pg_server(wal_segsize_mb: int | None = None) -> PgServer:
    root = tempfile.mkdtemp(prefix="cp-pg-")
    os.chmod(root, 0o755)
    _chown(root)
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD)
    _chown(pwfile)
    args = [f"{BINDIR}/initdb", "-D", os.path.join(root, "data"), "-U", "postgres",
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]
    if wal_segsize_mb:
        args.append(f"--wal-segsize={wal_segsize_mb}")
    subprocess.run(_as_server_user(args), check=True, capture_output=True)
    server = PgServer(root, free_port())
    with open(os.path.join(server.datadir, "postgresql.conf"), "a") as f:
        f.write("fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n")
    server.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(server.dsn(), connect_timeout=5).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server for the whole session; tests create their own databases in it."""
    server = start_pg_server()
    yield server
    server.destroy()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A server for one test that kills or fills it."""
    server = start_pg_server()
    yield server
    server.destroy()
