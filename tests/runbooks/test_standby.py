"""Several instances on one PostgreSQL store: any of them queues runs, only the active one
executes them; scheduled drills and incidents queue like any other start."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.runbooks import runs
from controlplane.runbooks.component import RunbooksComponent
from controlplane.web import create_app
from tests.runbooks.conftest import TOKEN, runbook, step, write_site
from tests.services.postgres import PgServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(tmp_path: Path, pg_server: PgServer) -> Iterator[tuple[Runtime, Runtime]]:
    dsn = pg_server.createdb(f"rb_{uuid.uuid4().hex[:12]}")
    path = write_site(tmp_path, [runbook("rb", [step("nap", "wait", args={"duration": "1s"})],
                                         schedule="0 4 * * *")],
                      extra={"store": {"dsn": dsn, "standby_retry": "0.2s"}})
    cfg = load_config(path)
    a, b = build_runtime(cfg), build_runtime(cfg)
    yield a, b
    for rt in (a, b):
        rt.stop(5)


def _wait(rt: Runtime, run_id: int, status: str, timeout: float = 30) -> dict[str, object]:
    end = time.monotonic() + timeout
    while (run := runs.get(rt.store, run_id))["status"] != status:
        assert time.monotonic() < end, run
        time.sleep(0.05)
    return run


def test_a_standby_queues_and_the_active_instance_runs(two: tuple[Runtime, Runtime]) -> None:
    a, b = two
    a.start()
    b.start()
    assert (a.role, b.role) == ("active", "standby")
    resp = create_app(b).test_client().post("/api/v1/runbooks/rb/runs",
                                            headers={"Authorization": f"Bearer {TOKEN}"},
                                            json={"by": "standby-user"})
    assert resp.status_code == 201
    run_id = resp.get_json()["run"]
    _wait(a, run_id, "succeeded")
    engine_a = a.runbook_engine
    assert engine_a is not None
    with a.store.session() as s:
        from controlplane.runbooks.model import RunRow

        row = s.get(RunRow, run_id)
        assert row is not None and row.owner == engine_a.instance


def test_the_schedule_queues_a_drill_refused_while_one_runs(two: tuple[Runtime, Runtime]) -> None:
    a, _ = two
    a.start()
    comp = a.component("runbooks")
    assert isinstance(comp, RunbooksComponent)
    assert ("runbook-rb", "cron[month='*', day='*', day_of_week='*', hour='4', minute='0']") \
        in a.scheduler.jobs()
    rb = a.config.runbook("rb")
    comp.scheduled(rb)
    comp.scheduled(rb)  # refused: the first is still queued or running
    (run,) = runs.history(a.store, "rb")
    assert (run["trigger"], run["started_by"]) == ("schedule", "schedule")
    _wait(a, int(run["id"]), "succeeded")  # type: ignore[arg-type]
