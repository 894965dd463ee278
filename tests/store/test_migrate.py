"""Schema migrations on SQLite and PostgreSQL: from an empty database, from the schema the
releases before Alembic made (``create_all``), and by `controlplane db upgrade`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, text

from controlplane.backups import catalog
from controlplane.features import table_metadata
from controlplane.incidents import queries
from controlplane.incidents.model import IncidentRow
from controlplane.results import utcnow
from controlplane.store import Store, migrate
from controlplane.store.db import _engine
from tests.services.common import run_cli
from tests.services.postgres import PgServer

PRE_ALEMBIC = Path(__file__).parent / "pre_alembic"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        yield pg.createdb(f"mig_{uuid.uuid4().hex[:12]}")


def create_pre_alembic_schema(dsn: str, without: str | None = None) -> None:
    """The tables as an older release's ``create_all`` made them; ``without`` drops one
    column line (a release before that column existed)."""
    engine = _engine(dsn)
    sql = (PRE_ALEMBIC / f"{engine.dialect.name}.sql").read_text()
    if without:
        sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith(
            without + " "))
    with engine.begin() as conn:
        for stmt in sql.split(";"):
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.startswith("--"))
            if body.strip():
                conn.execute(text(body))
    engine.dispose()


def schema_differences(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), table_metadata()))


def test_upgrade_from_an_empty_database_gives_the_models_schema(dsn: str) -> None:
    store = Store(dsn)
    try:
        assert migrate.current(store.engine) == migrate.head()
        assert schema_differences(store) == []
    finally:
        store.close()


def test_a_pre_alembic_database_is_upgraded_in_place_keeping_its_rows(dsn: str) -> None:
    create_pre_alembic_schema(dsn)
    engine = _engine(dsn)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO check_state (check_id, state, ok_streak, "
                          "degraded_streak, bad_streak, fail_streak, last_status, "
                          "last_message) VALUES ('tls-x', 'failing', 0, 0, 3, 3, 'failing', "
                          "'expired')"))
    engine.dispose()
    store = Store(dsn)
    try:
        assert migrate.current(store.engine) == migrate.head()
        assert schema_differences(store) == []
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT state, fail_streak FROM check_state")).all() == [
                ("failing", 3)]
    finally:
        store.close()


def test_a_database_from_before_manifest_sha256_gains_the_column(dsn: str) -> None:
    create_pre_alembic_schema(dsn, without="manifest_sha256")
    engine = _engine(dsn)
    assert "manifest_sha256" not in {c["name"] for c in inspect(engine).get_columns("backups")}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO backups (id, component, env, status, started_at, "
                          "blob_name, manifest_name, manifest, error, failed_step, host) VALUES "
                          "('app-1', 'app', 'production', 'complete', :t, 'b', 'm', '{}', '', "
                          "'', 'h')"), {"t": utcnow()})
    engine.dispose()
    store = Store(dsn)
    try:
        assert schema_differences(store) == []
        with store.session() as s:
            row = s.get(catalog.BackupRow, "app-1")
            assert row is not None and row.manifest_sha256 is None
            row.manifest_sha256 = "ab" * 32
        with store.session() as s:
            row = s.get(catalog.BackupRow, "app-1")
            assert row is not None and row.manifest_sha256 == "ab" * 32
    finally:
        store.close()


def test_an_incident_from_before_refs_keeps_its_slack_thread_and_jira_issue(dsn: str) -> None:
    create_pre_alembic_schema(dsn)
    engine = _engine(dsn)
    with engine.begin() as conn:
        for i, (channel, ts, key) in enumerate([("C0ONCALL", "1.000100", "OPS-1"),
                                                 (None, None, None)], start=1):
            conn.execute(text(
                "INSERT INTO incidents (id, dedup_key, check_id, env, kind, name, severity, "
                "labels, state, status, message, opened_at, since, notified, "
                "last_notified_message, slack_channel, slack_ts, jira_key) VALUES (:id, 'c/p', "
                "'c', 'p', 'tls', '', 'critical', '{}', 'open', 'failing', 'm', :t, :t, true, "
                "'', :ch, :ts, :key)"), {"id": i, "ch": channel, "ts": ts, "key": key,
                                          "t": utcnow()})
    engine.dispose()
    store = Store(dsn)
    try:
        assert schema_differences(store) == []
        with store.session() as s:
            first, second = s.get(IncidentRow, 1), s.get(IncidentRow, 2)
            assert first is not None and second is not None
            assert first.refs == {"slack": {"channel": "C0ONCALL", "ts": "1.000100"},
                                  "jira": {"key": "OPS-1"}}
            assert second.refs == {}
            data = queries.incident_json(first)
            assert (data["slack"], data["jira"]) == (
                {"channel": "C0ONCALL", "ts": "1.000100"}, {"key": "OPS-1"})
        columns = {c["name"] for c in inspect(store.engine).get_columns("incidents")}
        assert {"slack_channel", "slack_ts", "jira_key"} & columns == set()
    finally:
        store.close()
    Store(dsn).close()  # opening it again changes nothing


def test_db_upgrade_upgrades_once_then_says_it_is_current(dsn: str) -> None:
    first = run_cli("db", "upgrade", "--dsn", dsn)
    assert first.returncode == 0, first.stderr
    where = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://")).url \
        .render_as_string(hide_password=True)
    head = migrate.head()
    assert first.stdout == f"{where}: upgraded from revision none to {head} (the newest)\n"
    again = run_cli("db", "upgrade", "--dsn", dsn)
    assert again.stdout == f"{where}: already at revision {head} (the newest)\n"
    current = run_cli("db", "current", "--dsn", dsn)
    assert current.stdout == f"revision {head} (newest: {head})\n"


def test_db_upgrade_on_an_unreachable_store_exits_2_without_the_password() -> None:
    proc = run_cli("db", "upgrade", "--dsn", "postgresql://cp:hunter2@127.0.0.1:1/cp")
    assert proc.returncode == 2
    assert proc.stderr.startswith("controlplane: cannot open the store "
                                  "postgresql+psycopg://cp:***@127.0.0.1:1/cp: ")
    assert "hunter2" not in proc.stderr


def test_a_new_revision_is_written_from_what_the_models_have_and_the_newest_lacks() -> None:
    metadata = MetaData()
    for table in table_metadata().tables.values():
        table.to_metadata(metadata)
    Table("example_widgets", metadata, Column("id", Integer, primary_key=True),
          Column("who", String(120), nullable=False))
    head = migrate.head()
    path = Path(migrate.new_revision("example widgets", metadata))
    try:
        assert path.name == f"{int(head) + 1:04d}_example_widgets.py"
        text_ = path.read_text()
        assert f'down_revision = "{head}"' in text_ or f"down_revision = '{head}'" in text_
        assert "op.create_table('example_widgets'" in text_
        # Only the difference: the tables the newest revision already has are not repeated.
        assert "'results'" not in text_
    finally:
        path.unlink()
