"""The platform's postgres-restore runbook, end to end on a real PostgreSQL and Azurite:
back up, dry-run, restore into a new database, row counts against the manifest."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pyrage import x25519

from controlplane.runbooks.base import Services
from controlplane.runbooks.plan import plan
from tests.runbooks.conftest import MakeSite, Site
from tests.services.azurite import Azurite
from tests.services.postgres import PASSWORD, PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.azurite]

ROOT = Path(__file__).resolve().parents[2]
ROWS = 5000


def _source(pg: PgServer) -> str:
    db = f"src_{uuid.uuid4().hex[:8]}"
    dsn = pg.createdb(db)
    pg.execute("CREATE TABLE calls (id bigint PRIMARY KEY, caller text, payload text);"
               f"INSERT INTO calls SELECT g, 'caller-' || g, repeat(md5(g::text), 4) "
               f"FROM generate_series(1, {ROWS}) g;"
               "CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int, amount numeric);"
               "INSERT INTO billing.invoices VALUES (1, 10.5), (2, 20), (3, 30.25);", db)
    return dsn


def _site(make_site: MakeSite, tmp_path: Path, pg: PgServer, azurite: Azurite) -> Site:
    ident = x25519.Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(f"{ident}\n")
    os.chmod(key, 0o600)
    runbook: dict[str, Any] = yaml.safe_load((ROOT / "runbooks" / "postgres-restore.yaml")
                                             .read_text())
    extra = {
        "blob": {"backend": "azure", "connection_string": azurite.connection_string,
                 "container": f"t{uuid.uuid4().hex[:12]}"},
        "backups": {"components": {"app": {"dsn": _source(pg),
                                           "recipients": [str(ident.to_public())],
                                           "identity_file": str(key)}}}}
    return make_site([runbook], extra=extra)


def _count(pg: PgServer, db: str, table: str) -> int:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[call-overload]
        assert row is not None
        return int(row[0])


def test_postgres_restore_runbook_restores_into_a_new_database(
        make_site: MakeSite, tmp_path: Path, pg_server: PgServer, azurite: Azurite) -> None:
    site = _site(make_site, tmp_path, pg_server, azurite)
    backup = Services(site.runtime).backup_ops().run_backup("app")
    assert backup.status.value == "ok", backup.message
    backup_id = backup.details["backup_id"]
    target = f"restored_{uuid.uuid4().hex[:8]}"
    params = {"component": "app", "database": target}

    lines = plan(site.runtime, site.config.runbook("postgres-restore"), params)
    assert f"     restore backup {backup_id} (" in "\n".join(lines)
    assert f"     create database {target} (does not exist yet)" in lines
    assert f"       + public.calls: {ROWS} rows" in lines
    assert "       + billing.invoices: 3 rows" in lines
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:  # the dry-run made none
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (target,)).fetchone() is None

    run = site.wait(site.start("postgres-restore", params), timeout=120)
    assert run["status"] == "succeeded", run
    verify, restore, switch = run["steps"]
    assert (verify["step"], verify["outputs"]["backup_id"]) == ("verify", backup_id)
    assert restore["outputs"]["mismatches"] == []
    assert restore["outputs"]["row_counts"] == {"public.calls": ROWS, "billing.invoices": 3}
    assert restore["message"].startswith(f"{backup_id} restored into {target} (")
    assert "row counts match the manifest" in restore["message"]
    # Live progress of the restore: the bytes streamed so far, by phase.
    assert restore["progress"]["phase"] in ("download", "restore")
    assert restore["progress"]["bytes"] > 0
    assert switch["message"].startswith(f"Backup {backup_id} is restored into database "
                                        f"{target} and its row counts match the manifest.")
    assert _count(pg_server, target, "calls") == ROWS
    assert _count(pg_server, target, "billing.invoices") == 3
    assert PASSWORD not in str(run)  # no DSN password in steps, outputs or messages

    again = site.wait(site.start("postgres-restore", params), timeout=120)
    assert again["status"] == "failed"
    assert again["message"] == (f"step restore failed: cannot create scratch database "
                                f"{target}: database \"{target}\" already exists; restores only "
                                "go into a new database")
    lines = plan(site.runtime, site.config.runbook("postgres-restore"), params)
    assert f"     would fail: database {target} already exists; restores only go into a new " \
           "database" in lines
