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
                [self.binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "-l",
                 os.path.join(self.workdir, "data"), "--skipApiVersionCheck", "--loose"],
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
        self._run(f"{self.bindir}/pg_ctl", "-D", data, "-l", os.path.join(self.root, "log"),
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                  "-w", "-t", "120", "start")
        return self

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
        try:
            self._run(f"{self.bindir}/pg_ctl", "-D", os.path.join(self.root, "data"), "-m",
                      "fast", "-w", "-t", "60", "stop")
        except subprocess.CalledProcessError:
            log.warning("demo postgres did not stop cleanly root=%s", self.root)
