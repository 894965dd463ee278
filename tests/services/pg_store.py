"""A real PostgreSQL server for the result store's tests (initdb + pg_ctl in a temp dir).

Debian's server binaries run as the ``postgres`` user when the tests run as root
(PostgreSQL refuses to run as root). Each test gets its own database in the session's
server; a test that stops its server gets a server of its own.
"""

from __future__ import annotations

import itertools
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
PASSWORD = "store-test-pass"
_db_names = itertools.count(1)


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class StorePg:
    root: str
    port: int

    @property
    def datadir(self) -> str:
        return os.path.join(self.root, "data")

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        name = f"store_{os.getpid()}_{next(_db_names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[call-overload]
        return self.dsn(name)

    def start(self) -> None:
        subprocess.run(_as_server_user([
            f"{BINDIR}/pg_ctl", "-D", self.datadir, "-l", os.path.join(self.root, "log"),
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "-w", "-t", "120", "start"]), check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(_as_server_user([f"{BINDIR}/pg_ctl", "-D", self.datadir, "-m", "fast",
                                        "-w", "-t", "120", "stop"]), capture_output=True)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_store_pg() -> StorePg:
    if not os.path.exists(f"{BINDIR}/initdb"):
        pytest.fail(f"PostgreSQL server binaries not found in {BINDIR}; run scripts/test "
                    "(scripts/setup.d/00-apt.sh installs Debian's postgresql)")
    root = tempfile.mkdtemp(prefix="cp-store-pg-")
    os.chmod(root, 0o755)
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(_as_server_user([
        f"{BINDIR}/initdb", "-D", os.path.join(root, "data"), "-U", "postgres",
        "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True)
    with open(os.path.join(root, "data", "postgresql.conf"), "a") as f:
        f.write("fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n")
    server = StorePg(root, free_port())
    server.start()
    return server


@pytest.fixture(scope="session")
def store_pg() -> Iterator[StorePg]:
    """One server for the session; call ``new_database()`` per test."""
    server = start_store_pg()
    yield server
    server.destroy()


@pytest.fixture
def own_store_pg() -> Iterator[StorePg]:
    """A server for one test that stops it."""
    server = start_store_pg()
    yield server
    server.destroy()
