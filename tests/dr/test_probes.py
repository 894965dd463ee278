"""Check kinds backup and drill read the catalog; without a store they say what to do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.backups import catalog
from controlplane.dr.probes import BackupProbe, DrillProbe, backup_check, drill_check
from controlplane.probes import probe_class
from controlplane.probes.base import ProbeContext, Services
from controlplane.results import Status, utcnow
from controlplane.store import Store


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


def test_kinds_are_registered() -> None:
    assert probe_class("backup") is BackupProbe and probe_class("drill") is DrillProbe
    assert probe_class("dr").__name__ == "DrProbe"


def test_backup_check_reports_the_latest_backup(store: Store) -> None:
    ctx = ProbeContext(services=Services(store=store))
    probe = BackupProbe(backup_check("app", "production"), ctx)
    first = probe.execute()
    assert (first.status, first.message) == (Status.DEGRADED, "no backup of app yet")
    with store.session() as s:
        s.add(catalog.BackupRow(id="app-1", component="app", status="failed",
                                started_at=utcnow(), failed_step="snapshot",
                                error="cannot connect to Postgres: refused"))
    failed = probe.execute()
    assert (failed.status, failed.message) == (
        Status.FAILING, "latest backup app-1 failed at snapshot: cannot connect to Postgres: "
        "refused")


def test_drill_check_reports_the_latest_drill(store: Store) -> None:
    probe = DrillProbe(drill_check("app", "production"),
                       ProbeContext(services=Services(store=store)))
    with store.session() as s:
        s.add(catalog.DrillRow(component="app", status="passed", started_at=utcnow()))
    assert probe.execute().message == "latest drill is passed"


def test_catalog_checks_without_a_store_are_errors_that_say_where_to_run_them() -> None:
    result = BackupProbe(backup_check("app", "production")).execute()
    assert result.status == Status.ERROR
    assert result.message == ("this check reads the backup catalog; run it inside the control "
                              "plane (`controlplane run`), or use `controlplane backup list`")
