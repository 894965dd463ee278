"""/readyz follows the real PostgreSQL store: 503 while it is down, 200 once it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.web import create_app
from tests.services.postgres import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("scripted_kind")]

CONFIG = """
environments: {production: {label: Production}}
store: {dsn: "%(dsn)s"}
check_files: []
checks:
  - {id: tcp-x, kind: scripted, env: production, interval: 1h}
"""


@pytest.fixture
def rt(tmp_path: Path, own_pg_server: PgServer) -> Iterator[Runtime]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"dsn": own_pg_server.dsn()})
    runtime = build_runtime(load_config(str(path)))
    runtime.scheduler.start()
    yield runtime
    runtime.stop(5)


def test_readyz_is_503_while_postgres_is_down_and_200_when_it_is_back(
        rt: Runtime, own_pg_server: PgServer) -> None:
    client: FlaskClient = create_app(rt).test_client()
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (
        200, {"status": "ok", "store": True, "store_writes": True, "scheduler": True,
              "outbox": True, "role": "active", "problems": []})

    own_pg_server.stop()
    down = client.get("/readyz")
    assert (down.status_code, down.get_json()) == (
        503, {"status": "unavailable", "store": False, "store_writes": True,
              "scheduler": True, "outbox": True, "role": "active",
              "problems": ["the store does not answer SELECT 1"]})
    assert client.get("/healthz").status_code == 200  # the process itself is alive

    own_pg_server.start()
    again = client.get("/readyz")
    assert (again.status_code, again.get_json()) == (
        200, {"status": "ok", "store": True, "store_writes": True, "scheduler": True,
              "outbox": True, "role": "active", "problems": []})
