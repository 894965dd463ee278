"""A store created before channel references moved into ``refs`` is upgraded on open."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from controlplane.incidents import queries
from controlplane.incidents.model import IncidentRow
from controlplane.store import Store
from tests.services.postgres import PgServer


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.createdb(f"refs_{uuid.uuid4().hex[:8]}")


def test_an_old_store_gets_refs_filled_from_the_old_columns(dsn: str) -> None:
    Store(dsn).close()  # today's schema, then made into the old one
    engine = Store(dsn).engine
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE incidents DROP COLUMN refs"))
        for ddl in ("slack_channel VARCHAR(80)", "slack_ts VARCHAR(40)", "jira_key VARCHAR(40)"):
            conn.execute(text(f"ALTER TABLE incidents ADD COLUMN {ddl}"))
        for i, (channel, ts, key) in enumerate([("C0ONCALL", "1.000100", "OPS-1"),
                                                 (None, None, None)], start=1):
            conn.execute(text(
                "INSERT INTO incidents (id, dedup_key, check_id, env, kind, name, severity, "
                "labels, state, status, message, opened_at, since, notified, "
                "last_notified_message, slack_channel, slack_ts, jira_key) VALUES (:id, 'c/p', "
                "'c', 'p', 'tls', '', 'critical', '{}', 'open', 'failing', 'm', "
                "'2026-11-26 12:00:00', '2026-11-26 12:00:00', true, '', :ch, :ts, :key)"),
                {"id": i, "ch": channel, "ts": ts, "key": key})
    engine.dispose()
    store = Store(dsn)
    try:
        with store.session() as s:
            first, second = s.get(IncidentRow, 1), s.get(IncidentRow, 2)
            assert first is not None and second is not None
            assert first.refs == {"slack": {"channel": "C0ONCALL", "ts": "1.000100"},
                                  "jira": {"key": "OPS-1"}}
            assert second.refs == {}
            data = queries.incident_json(first)
            assert (data["slack"], data["jira"]) == (
                {"channel": "C0ONCALL", "ts": "1.000100"}, {"key": "OPS-1"})
    finally:
        store.close()
    Store(dsn).close()  # opening it again changes nothing
