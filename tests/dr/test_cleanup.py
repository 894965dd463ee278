"""A killed drill's leftovers: its `running` row and its scratch database are cleaned at the
next drill and at start-up, and nothing that belongs to a live drill or another component."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from controlplane.app import build_runtime
from controlplane.backups import catalog
from controlplane.config import load_config
from controlplane.results import Status, utcnow
from tests.backups.conftest import Env, MakeEnv
from tests.services.postgres import PgServer

pytestmark = pytest.mark.postgres

STALE_DB = "cp_drill_app_20260101000000_901"  # a drill killed long ago
LIVE_DB = "cp_drill_app_20260101000000_902"  # a drill still running in another process
OTHER_DB = "cp_drill_app_v2_20260101000000_903"  # component app-v2, not ours


def _databases(pg: PgServer) -> list[str]:
    with psycopg.connect(pg.dsn()) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, "
                            "'cp_drill_') ORDER BY 1").fetchall()
        return [str(r[0]) for r in rows]


@pytest.fixture
def leftovers(pg_server: PgServer) -> Iterator[PgServer]:
    for name in (STALE_DB, LIVE_DB, OTHER_DB):
        pg_server.createdb(name)
    yield pg_server
    for name in (STALE_DB, LIVE_DB, OTHER_DB):
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _add_drills(env: Env) -> tuple[int, int]:
    """A `running` row two hours old (timeout 1h) and one a minute old."""
    now = utcnow()
    with env.store.session() as s:
        stale = catalog.DrillRow(component="app", status="running", scratch_db=STALE_DB,
                                 started_at=now - timedelta(hours=2))
        live = catalog.DrillRow(component="app", status="running", scratch_db=LIVE_DB,
                                started_at=now - timedelta(minutes=1))
        s.add_all([stale, live])
        s.flush()
        return stale.id, live.id


STALE_MESSAGE = ("interrupted: still marked running 3600s (backups.components.app.drill."
                 "timeout) after it started, so the process running it stopped or crashed; "
                 "its scratch database is dropped")


def _assert_cleaned(env: Env, pg: PgServer, stale_id: int, live_id: int) -> None:
    with env.store.session() as s:
        stale = s.get(catalog.DrillRow, stale_id)
        live = s.get(catalog.DrillRow, live_id)
        assert stale is not None and live is not None
        assert (stale.status, stale.failed_step, stale.message) == (
            "failed", "interrupted", STALE_MESSAGE)
        assert stale.finished_at is not None
        assert live.status == "running"
    assert _databases(pg) == [LIVE_DB, OTHER_DB]


def test_next_drill_fails_stale_running_drills_and_drops_their_scratch_databases(
        make_env: MakeEnv, source_dsn: str, leftovers: PgServer,
        caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(source_dsn, drill={"timeout": "1h"})
    stale_id, live_id = _add_drills(env)
    assert env.ops.run_backup("app").status == Status.OK
    with caplog.at_level(logging.WARNING, logger="controlplane.dr.cleanup"):
        result = env.ops.run_drill("app")
    assert result.status == Status.OK, result.message
    _assert_cleaned(env, leftovers, stale_id, live_id)
    logged = [r.getMessage() for r in caplog.records]
    assert logged[0].startswith(f"stale drill marked failed component=app drill_id={stale_id} "
                                "started_at=")
    assert logged[0].endswith(f" scratch_db={STALE_DB}")
    assert logged[1:] == [f"dropped leftover scratch database component=app db={STALE_DB}"]


def test_start_up_fails_stale_running_drills_and_drops_their_scratch_databases(
        make_env: MakeEnv, source_dsn: str, leftovers: PgServer) -> None:
    env = make_env(source_dsn, drill={"timeout": "1h"})
    stale_id, live_id = _add_drills(env)
    rt = build_runtime(load_config(env.config_file()))
    comp = rt.component("backups")
    assert comp is not None
    comp.start()
    try:
        deadline = time.monotonic() + 120
        while STALE_DB in _databases(leftovers) and time.monotonic() < deadline:
            time.sleep(0.2)
        _assert_cleaned(env, leftovers, stale_id, live_id)
    finally:
        rt.stop(0)
