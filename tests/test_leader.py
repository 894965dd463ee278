"""Several instances on one PostgreSQL store: one is active, the others stand by and take
over when it goes; an instance that loses its lock stops."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from controlplane.app import Runtime, build_runtime
from controlplane.config import ControlPlaneConfig, EnvironmentConfig, StoreConfig
from controlplane.results import Result
from controlplane.web import create_app
from tests.fakeprobes import ScriptedConfig
from tests.services.postgres import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("scripted_kind")]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Instance:
    def __init__(self, dsn: str) -> None:
        cfg = ControlPlaneConfig(
            environments={"dev": EnvironmentConfig()},
            store=StoreConfig(dsn=dsn, standby_retry=0.2),
            checks=[ScriptedConfig(id="tick", kind="scripted", interval=0.2)])
        self.rt: Runtime = build_runtime(cfg)
        self.rt.scheduler.spread_s = 0
        self.runs: list[Result] = []
        self.rt.pipeline.on_result(lambda r, *_: self.runs.append(r))
        self.lost = threading.Event()
        self.rt.on_leadership_lost = self.lost.set

    def stop(self) -> None:
        if self.rt.role != "stopped":
            self.rt.stop(5)


@pytest.fixture
def two(pg_server: PgServer) -> Iterator[tuple[Instance, Instance]]:
    dsn = pg_server.createdb(f"leader_{uuid.uuid4().hex[:12]}")
    a, b = Instance(dsn), Instance(dsn)
    yield a, b
    for i in (a, b):
        i.stop()


def test_the_second_instance_stands_by_and_takes_over_when_the_first_stops(
        two: tuple[Instance, Instance]) -> None:
    a, b = two
    a.rt.start()
    b.rt.start()
    assert (a.rt.role, b.rt.role) == ("active", "standby")
    wait_for("runs on the active instance", lambda: len(a.runs) >= 3)
    assert b.runs == [] and not b.rt.scheduler.running
    a.stop()
    wait_for("the standby to take over", lambda: b.rt.role == "active")
    wait_for("runs on the new active instance", lambda: len(b.runs) >= 2)
    assert b.rt.scheduler.running


def test_a_standby_is_ready_and_says_so(two: tuple[Instance, Instance]) -> None:
    a, b = two
    a.rt.start()
    b.rt.start()
    for inst, role, scheduler in ((a, "active", True), (b, "standby", False)):
        resp = create_app(inst.rt).test_client().get("/readyz")
        assert (resp.status_code, resp.get_json()) == (
            200, {"status": "ok", "store": True, "store_writes": True, "scheduler": scheduler,
                  "outbox": True, "role": role, "problems": []})


def test_an_instance_whose_lock_connection_dies_stops_and_the_standby_takes_over(
        two: tuple[Instance, Instance], pg_server: PgServer) -> None:
    a, b = two
    a.rt.start()
    b.rt.start()
    db = a.rt.store.engine.url.database
    pg_server.execute(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d "
        f"ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{db}'")
    assert a.lost.wait(10), "the active instance did not notice it lost its lock"
    assert a.rt.leadership_lost is True
    wait_for("the standby to take over", lambda: b.rt.role == "active")


def test_on_sqlite_the_only_instance_is_active_at_once(tmp_path: object) -> None:
    cfg = ControlPlaneConfig(environments={"dev": EnvironmentConfig()},
                             store=StoreConfig(dsn="sqlite://"),
                             checks=[ScriptedConfig(id="tick", kind="scripted", interval=60)])
    rt = build_runtime(cfg)
    rt.start()
    try:
        assert rt.role == "active" and rt.scheduler.running
        assert rt.leadership is not None and rt.leadership._thread is None
    finally:
        rt.stop(5)
    assert rt.role == "stopped"


def test_a_standby_whose_retries_meet_a_stopped_postgres_takes_over_once_it_is_back(
        own_pg_server: PgServer) -> None:
    dsn = own_pg_server.createdb(f"leader_{uuid.uuid4().hex[:12]}")
    a, b = Instance(dsn), Instance(dsn)
    try:
        a.rt.start()
        b.rt.start()
        assert (a.rt.role, b.rt.role) == ("active", "standby")
        own_pg_server.stop("fast")  # b's retries (every 0.2 s) now fail to connect
        assert a.lost.wait(10), "the active instance did not notice it lost its lock"
        time.sleep(1.0)
        own_pg_server.start()
        wait_for("the standby to take over after the restart", lambda: b.rt.role == "active")
    finally:
        for i in (a, b):
            i.stop()
