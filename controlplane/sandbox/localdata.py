"""Local data services for the demo, when the machine has them: Azurite and PostgreSQL.

Both are optional: the demo falls back to a local-folder blob backend without Azurite and
skips the database backup without PostgreSQL binaries. Everything lives in the demo's
working directory and listens on loopback only.
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time

log = logging.getLogger(__name__)

# Azurite's documented development account: public, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log_file: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start; see {log_file}") from None
            time.sleep(0.2)


def die_with_parent(*setpriv_args: str) -> list[str]:
    """A command prefix that SIGKILLs the server if the demo process dies (even by SIGKILL).

    setpriv sets PR_SET_PDEATHSIG just before exec; a Python preexec_fn would run in a
    forked copy of the threaded demo process, where it can deadlock. The signal follows the
    thread that started the child: servers are started from the demo's main thread.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if setpriv_args:
            raise RuntimeError("setpriv (util-linux) is needed to run PostgreSQL as postgres")
        return []
    return [setpriv, *setpriv_args, "--pdeathsig", "KILL", "--"]


def azurite_binary() -> str | None:
    cache = os.environ.get("CONTROLPLANE_CACHE") or os.path.expanduser("~/.cache/controlplane")
    path = os.path.join(cache, "azurite", "node_modules", ".bin", "azurite-blob")
    return path if os.access(path, os.X_OK) else shutil.which("azurite-blob")


class Azurite:
    def __init__(self, workdir: str, binary: str) -> None:
        self.workdir, self.binary = os.path.join(workdir, "azurite"), binary
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def start(self) -> Azurite:
        os.makedirs(self.workdir, exist_ok=True)
        log_file = os.path.join(self.workdir, "azurite.log")
        with open(log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [*die_with_parent(), self.binary, "--blobHost", "127.0.0.1", "--blobPort",
                 str(self.port), "-l", os.path.join(self.workdir, "data"),
                 "--skipApiVersionCheck", "--loose"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, self.proc, "azurite", log_file)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


def postgres_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


class Postgres:
    """A throw-away PostgreSQL (initdb + pg_ctl); as root it runs as the postgres user."""

    def __init__(self, workdir: str, bindir: str) -> None:
        self.root, self.bindir = os.path.join(workdir, "postgres"), bindir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.password = secrets.token_urlsafe(16)

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> Postgres:
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as fh:
            fh.write(self.password)
        if os.geteuid() == 0:
            for path in (self.root, pwfile):
                shutil.chown(path, "postgres", "postgres")
        data = os.path.join(self.root, "data")
        self._run(f"{self.bindir}/initdb", "-D", data, "-U", "postgres",
                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        os.unlink(pwfile)
        # The postmaster runs as our child, not daemonized by pg_ctl: with a parent-death
        # signal it dies with the demo even when the demo is SIGKILLed (its backends follow
        # the postmaster), so no PostgreSQL outlives it.
        user = ["--reuid", "postgres", "--regid", "postgres", "--init-groups"] \
            if os.geteuid() == 0 else []
        log_file = os.path.join(self.root, "log")
        with open(log_file, "ab") as out:
            if os.geteuid() == 0:
                shutil.chown(log_file, "postgres", "postgres")
            self.proc = subprocess.Popen(
                [*die_with_parent(*user), f"{self.bindir}/postgres", "-D", data,
                 "-p", str(self.port), "-k", self.root, "-c", "listen_addresses=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, self.proc, "postgres", log_file)
        self._wait_accepting(log_file)
        return self

    def _wait_accepting(self, log_file: str) -> None:
        deadline = time.monotonic() + 120
        while subprocess.run([f"{self.bindir}/pg_isready", "-q", "-h", "127.0.0.1", "-p",
                              str(self.port)], check=False).returncode != 0:
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise RuntimeError(f"postgres did not start; see {log_file}")
            time.sleep(0.1)

    def seed(self, db: str) -> str:
        """Create ``db`` with a small table of ID-card links; return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        with psycopg.connect(self.dsn(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE idcard_links (id serial PRIMARY KEY, client_id text, "
                         "created_at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO idcard_links (client_id) "
                         "SELECT 'client-' || g FROM generate_series(1, 500) g")
        return self.dsn(db)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # "fast" shutdown, as pg_ctl -m fast sends
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            log.warning("demo postgres did not stop cleanly root=%s", self.root)
            proc.kill()
            proc.wait(30)
