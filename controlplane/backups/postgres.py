"""PostgreSQL side of backups: snapshots, row counts, pg_dump and pg_restore processes.

Passwords never go on a command line (other users could read them in ps): the DSN is
split into a password-free conninfo for ``-d`` and PGPASSWORD in the child's environment.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
ORDER BY 1, 2
"""


class PgError(Exception):
    """A Postgres operation failed; the message is safe to show (no password)."""


BAD_DSN = ("invalid Postgres DSN: write it as postgresql://USER:PASSWORD@HOST:PORT/DB or "
           "'host=H dbname=D user=U'; the DSN itself is not shown (it may hold a password)")


def parse_dsn(dsn: str) -> dict[str, Any]:
    """libpq's parse of a DSN; its errors quote the DSN, so they are never passed on."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise PgError(BAD_DSN) from None


def split_dsn(dsn: str) -> tuple[str, str | None]:
    """(conninfo without password, password) from a URI or key=value DSN."""
    params = parse_dsn(dsn)
    password = params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), (
        str(password) if password is not None else None)


def with_dbname(dsn: str, dbname: str) -> str:
    params = parse_dsn(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def dbname_of(dsn: str) -> str:
    return str(parse_dsn(dsn).get("dbname") or "")


def child_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection[Any]:
    parse_dsn(dsn)
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=15)
    except psycopg.Error as exc:
        raise PgError(f"cannot connect to Postgres: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def tool(name: str) -> str:
    """Path of pg_dump/pg_restore: PG_BINDIR, then PATH."""
    bindir = os.environ.get("PG_BINDIR")
    if bindir and os.path.exists(os.path.join(bindir, name)):
        return os.path.join(bindir, name)
    found = shutil.which(name)
    if found is None:
        raise PgError(f"{name} not found; install postgresql-client or set PG_BINDIR")
    return found


def tool_version(name: str) -> str:
    out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def table_names(conn: psycopg.Connection[Any]) -> list[str]:
    return [f"{schema}.{table}" for schema, table in conn.execute(TABLES_SQL).fetchall()]


def count_rows(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for qualified in tables:
        schema, table = qualified.split(".", 1)
        q = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                        sql.Identifier(table))
        row = conn.execute(q).fetchone()
        counts[qualified] = int(row[0]) if row else 0
    return counts


@dataclass
class Snapshot:
    """A repeatable-read transaction whose snapshot pg_dump imports (one consistent view)."""

    conn: psycopg.Connection[Any]
    snapshot_id: str
    server_version: str
    database: str
    tables: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls, dsn: str) -> Snapshot:
        conn = connect(dsn)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT pg_export_snapshot(), current_setting('server_version'),"
                               " current_database()").fetchone()
            assert row is not None
            return cls(conn, str(row[0]), str(row[1]), str(row[2]), table_names(conn))
        except psycopg.Error as exc:
            conn.close()
            raise PgError(f"cannot open a snapshot: {_first_line(exc)}") from None

    def count_in_background(self) -> None:
        """Count rows in this snapshot while pg_dump streams (same data pg_dump sees)."""

        def work() -> None:
            try:
                self.counts = count_rows(self.conn, self.tables)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=work, name="row-counts", daemon=True)
        self._thread.start()

    def wait_counts(self) -> dict[str, int]:
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise PgError(f"counting rows failed: {_first_line(self.error)}")
        return self.counts

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            log.debug("snapshot close failed", exc_info=True)


class PgProcess:
    """A pg_dump or pg_restore child whose stderr is collected (bounded) in a thread."""

    def __init__(self, args: list[str], password: str | None, stdin: int | None = None,
                 stdout: int | None = None) -> None:
        self.name = os.path.basename(args[0])
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                     env=child_env(password))
        self._err: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        size = 0
        for line in self.proc.stderr:
            if size < 64 * 1024:
                self._err.append(line)
                size += len(line)

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stderr_text(self) -> str:
        return b"".join(self._err).decode(errors="replace").strip()

    def failure(self) -> str:
        """The most telling stderr line, with pg_dump's prefix removed."""
        lines = [ln for ln in self.stderr_text().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        text = errors[0] if errors else f"exit code {self.proc.returncode}"
        return re.sub(r"^(pg_dump|pg_restore): (error: )?", "", text).strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        # Let the stderr reader finish, so failure() sees the child's last words.
        self._reader.join(5)


def start_dump(dsn: str, snapshot_id: str) -> PgProcess:
    conninfo, password = split_dsn(dsn)
    args = [tool("pg_dump"), "--format=custom", f"--snapshot={snapshot_id}", "--no-password",
            "-d", conninfo]
    return PgProcess(args, password, stdout=subprocess.PIPE)


def start_restore(dsn: str, clean: bool = False) -> PgProcess:
    conninfo, password = split_dsn(dsn)
    args = [tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
            "--no-password", "-d", conninfo]
    if clean:
        args += ["--clean", "--if-exists"]
    return PgProcess(args, password, stdin=subprocess.PIPE)


def user_tables(dsn: str) -> list[str]:
    with connect(dsn, autocommit=True) as conn:
        return table_names(conn)


def create_database(admin_dsn: str, name: str, tablespace: str | None) -> None:
    with connect(admin_dsn, autocommit=True) as conn:
        q = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if tablespace:
            q = q + sql.SQL(" TABLESPACE {}").format(sql.Identifier(tablespace))
        try:
            conn.execute(q)
        except psycopg.Error as exc:
            raise PgError(f"cannot create scratch database {name}: {_first_line(exc)}") from None


def drop_database(admin_dsn: str, name: str) -> None:
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def database_names(admin_dsn: str, prefix: str) -> list[str]:
    """Databases on the server whose name starts with ``prefix`` (drills' scratch databases)."""
    with connect(admin_dsn, autocommit=True) as conn:
        try:
            rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
                                " ORDER BY 1", (prefix,)).fetchall()
        except psycopg.Error as exc:
            raise PgError(f"cannot list databases: {_first_line(exc)}") from None
    return [str(r[0]) for r in rows]
