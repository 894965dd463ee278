"""/dr (managers' dashboard) and /api/v1/dr."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.backups import catalog
from controlplane.config import ControlPlaneConfig
from controlplane.results import utcnow
from controlplane.web import create_app

SECRET = "pg-password-never-shown"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    cfg = ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "blob": {"backend": "local", "path": str(tmp_path / "blobs")},
        "backups": {"components": {"app": {
            "dsn": f"postgresql://app:{SECRET}@db.internal/app",
            "recipients": ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"],
            "identity_file": str(tmp_path / "key.txt")}}},
        "dr": {"components": {"postgres": {"rto": "1h", "rpo": "24h",
                                           "backup_component": "app"}}}})
    rt = build_runtime(cfg)
    now = utcnow()
    with rt.store.session() as s:
        for i, (status, verified) in enumerate([("complete", True), ("failed", False),
                                                ("complete", True)]):
            started = now - timedelta(hours=2 + 20 * i)
            s.add(catalog.BackupRow(
                id=f"app-production-{i}", component="app", env="production", status=status,
                started_at=started, finished_at=started + timedelta(minutes=3),
                duration_s=180.0, size_bytes=5 * 1024 * 1024 if status == "complete" else None,
                verified_at=started + timedelta(hours=1) if verified else None,
                error="" if status == "complete" else "pg_dump failed (exit 1): boom",
                failed_step="" if status == "complete" else "dump+upload"))
        s.add(catalog.DrillRow(component="app", backup_id="app-production-0",
                               status="passed", started_at=now - timedelta(minutes=50),
                               duration_s=2950.0, restore_s=2000.0))
    yield rt
    rt.stop(0)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return create_app(runtime).test_client()


def test_dr_page_shows_table_status_words_charts_and_history(client: FlaskClient) -> None:
    page = client.get("/dr")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for header in ("Component", "RTO target", "Measured RTO", "RPO target", "Current RPO",
                   "Last backup", "Last drill", "Status"):
        assert f"<th>{header}</th>" in html
    # postgres: RPO 2h of 24h is met; RTO 2950s of 3600s is beyond 80 %: at risk.
    assert '<tr id="dr-postgres">' in html
    assert '<span class="badge s-at_risk">At risk</span>' in html
    assert "RTO 49m vs target 60m" in html
    assert '<span class="badge s-unknown">Unknown</span>' in html  # kafka, never measured
    assert html.count('<svg class="rpo-chart"') == 4
    assert 'class="target"' in html and '<polyline class="rpo"' in html
    assert "pg_dump failed (exit 1): boom" in html
    assert "5.0 MiB" in html and "app-production-2" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert SECRET not in html


def test_api_dr_gives_the_same_data_as_json(client: FlaskClient) -> None:
    data: dict[str, Any] = client.get("/api/v1/dr").get_json()
    comps = {c["component"]: c for c in data["components"]}
    assert sorted(comps) == ["cluster-rebuild", "kafka", "kubernetes-secrets", "postgres"]
    pg = comps["postgres"]
    assert (pg["status"], pg["rto_status"], pg["rpo_status"]) == ("at_risk", "at_risk", "met")
    assert (pg["rto_s"], pg["rto_target_s"], pg["rpo_target_s"]) == (2950.0, 3600.0, 86400.0)
    assert [b["status"] for b in pg["backups"]] == ["complete", "failed", "complete"]
    assert [d["status"] for d in pg["drills"]] == ["passed"]
    assert len(pg["rpo_series"]) == 60
    # the table's columns, as on the page: last backup and last drill, RPO beside the
    # newest-complete one (here the same backup: the newest complete one is verified)
    assert (pg["last_backup"]["id"], pg["last_backup"]["status"]) == ("app-production-0",
                                                                      "complete")
    assert (pg["last_drill"]["backup_id"], pg["last_drill"]["duration_s"]) == (
        "app-production-0", 2950.0)
    assert pg["rpo_s"] == pg["rpo_complete_s"] and 7200 <= pg["rpo_s"] < 7200 + 600
    assert [b["size_bytes"] for b in pg["backups"]] == [5242880, None, 5242880]
    assert comps["kafka"]["status"] == "unknown" and comps["kafka"]["rpo_s"] is None
    assert data["at_risk_ratio"] == 0.8
    assert SECRET not in client.get("/api/v1/dr").get_data(as_text=True)
