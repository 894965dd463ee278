"""Schema migrations: Alembic, configured in code, with the revisions inside the package.

Every schema change is a revision in controlplane/store/migrations/versions/. A store is
brought to the newest revision by ``controlplane db upgrade``, by ``controlplane run`` and
``demo`` at start, and by every :class:`~controlplane.store.Store` when it opens (so a CLI
command on a fresh database works). Upgrading is idempotent and, on PostgreSQL, serialised
by an advisory lock, so instances starting together do not race.

Databases created before Alembic (by ``create_all``) have no ``alembic_version`` table. The
first revision creates only the tables that are missing and the second adds only the
columns that are missing, so such a database is upgraded in place, whichever older release
made it, and then carries the version like any other.
"""

from __future__ import annotations

import logging
import os
import tempfile
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, create_engine, text

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl" on every open; our one line says what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATION_LOCK = 0x63705F6D6967  # "cp_mig"; leader.py's lock is another key
"""PostgreSQL advisory lock held while migrating."""


def alembic_config(connection: Connection | None = None,
                   metadata: MetaData | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.attributes["connection"] = connection
    cfg.attributes["metadata"] = metadata
    return cfg


def script_location() -> str:
    return str(resources.files("controlplane.store").joinpath("migrations"))


def new_revision(message: str, metadata: MetaData) -> str:
    """Write the next revision file: what ``metadata`` (every feature's tables) has that
    the newest revision lacks, compared on a scratch SQLite database. Read and complete it
    before committing: autogenerate cannot see renames or move data."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{os.path.join(tmp, 'scratch.db')}")
        try:
            upgrade(engine)
            with engine.connect() as conn:
                number = f"{int(head()) + 1:04d}"
                script = command.revision(alembic_config(conn, metadata), message=message,
                                          autogenerate=True, rev_id=number)
        finally:
            engine.dispose()
    path = script.path if script is not None and not isinstance(script, list) else ""
    return str(path)


def head() -> str:
    """The newest revision this release knows."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty or pre-Alembic database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to ``revision``; returns (before, after)."""
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
        try:
            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                conn.commit()
    if before != after:
        log.info("store schema upgraded from=%s to=%s", before or "none", after)
    return before, after
