"""Migration 0008: runbook audit records stored as incidents of kind ``runbook`` become
outbox subjects of their run, keeping their Jira issue and Slack thread; real incidents
stay as they were."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from controlplane.incidents import api as incidents
from controlplane.incidents.model import IncidentEventRow, IncidentRow, OutboxRow
from controlplane.results import utcnow
from controlplane.store import Store, migrate
from controlplane.store.db import _engine
from tests.services.postgres import PgServer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        yield pg.createdb(f"mig_{uuid.uuid4().hex[:12]}")


def _incident(conn: object, id_: int, kind: str, key: str, refs: str) -> None:
    conn.execute(text(  # type: ignore[attr-defined]
        "INSERT INTO incidents (id, dedup_key, check_id, env, kind, name, severity, labels, "
        "state, status, message, opened_at, since, notified, last_notified_message, refs) "
        "VALUES (:id, :key, 'c', '', :kind, '', 'major', '{}', 'resolved', 'succeeded', 'm', "
        ":t, :t, true, '', :refs)"), {"id": id_, "key": key, "kind": kind, "t": utcnow(),
                                      "refs": refs})
    conn.execute(text(  # type: ignore[attr-defined]
        "INSERT INTO incident_events (incident_id, at, kind, message) VALUES (:id, :t, "
        "'notified', 'jira open delivered')"), {"id": id_, "t": utcnow()})
    for n, state in enumerate(("sent", "pending")):
        conn.execute(text(  # type: ignore[attr-defined]
            "INSERT INTO notification_outbox (incident_id, channel, action, payload, "
            "idempotency_key, state, attempts, created_at, next_attempt_at, last_error, "
            "response) VALUES (:id, 'jira', :action, '{}', :k, :state, 0, :t, :t, '', '{}')"),
            {"id": id_, "action": ("open", "resolve")[n], "k": f"{id_}-{n}", "state": state,
             "t": utcnow()})


def test_audit_records_become_run_subjects_and_leave_the_incidents(dsn: str) -> None:
    engine = _engine(dsn)
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        _incident(conn, 1, "tls", "tls-x/prod", '{"jira": {"key": "OPS-1"}}')
        _incident(conn, 2, "runbook", "runbook-run/7", '{"jira": {"key": "OPS-2"}}')
        conn.execute(text(
            "INSERT INTO runbook_runs (id, runbook_id, status, params, started_by, trigger, "
            "created_at, message, owner, cancel_requested, cancelled_by, audit_incident_id) "
            "VALUES (7, 'rb', 'succeeded', '{}', 'ann', 'cli', :t, '', '', false, '', 2)"),
            {"t": utcnow()})
    engine.dispose()
    store = Store(dsn)  # upgrades to head
    try:
        assert migrate.current(store.engine) == migrate.head()
        with store.session() as s:
            assert [i.id for i in s.scalars(select(IncidentRow))] == [1]
            assert {e.incident_id for e in s.scalars(select(IncidentEventRow))} == {1}
            assert [(r.incident_id, r.subject, r.action, r.state) for r in s.scalars(
                select(OutboxRow).order_by(OutboxRow.id))] == [
                (1, None, "open", "sent"), (1, None, "resolve", "pending"),
                (None, "runbook-run/7", "open", "sent"),
                (None, "runbook-run/7", "resolve", "pending")]
            assert incidents.refs(s, subject="runbook-run/7") == {"jira": {"key": "OPS-2"}}
            assert incidents.refs(s, incident_id=1) == {"jira": {"key": "OPS-1"}}
    finally:
        store.close()
