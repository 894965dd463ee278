"""Engine, sessions and the declarative base every table module shares.

The store knows no feature: features declare their table modules in controlplane/features.py,
and the schema is made and changed only by the migrations (controlplane/store/migrate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

from controlplane.redact import redact

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class StoreUnavailable(Exception):
    """The database named by ``store.dsn`` cannot be reached or set up."""


class Store:
    """One database: brought to the newest schema on open, hands out short transactions."""

    def __init__(self, dsn: str, upgrade: bool = True) -> None:
        from controlplane.store import migrate

        self.dsn = dsn
        try:
            self.engine = _engine(dsn)
        except (ArgumentError, ValueError) as exc:
            # The message may quote the DSN (and its password): never show it.
            raise StoreUnavailable(f"cannot open the store: store.dsn is not a database URL "
                                   f"({type(exc).__name__}); percent-encode '@', ':' and '/' "
                                   "in the user and password") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            if upgrade:
                migrate.upgrade(self.engine)
            else:
                self.ping_or_raise()
        except OperationalError as exc:
            self.engine.dispose()
            where = self.engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig or exc).strip().splitlines()[0]
            # render_as_string hides the URL's password, not a ?password= in the query.
            raise StoreUnavailable(redact(f"cannot open the store {where}: {reason}; check "
                                          "store.dsn and that the database is up")) from None
        log.info("store opened dialect=%s", self.engine.dialect.name)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def ping_or_raise(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            log.warning("store ping failed", exc_info=True)
            return False

    def close(self) -> None:
        self.engine.dispose()


def _engine(dsn: str) -> Engine:
    if dsn.startswith("postgresql://"):
        dsn = "postgresql+psycopg://" + dsn.removeprefix("postgresql://")
    if not dsn.startswith("sqlite"):
        return create_engine(dsn, pool_pre_ping=True, pool_size=10)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if dsn in ("sqlite://", "sqlite:///:memory:"):
        kwargs["poolclass"] = StaticPool
    engine = create_engine(dsn, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the web server read while the scheduler writes.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine
