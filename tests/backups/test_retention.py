"""Retention rules and `backup prune`, on the local folder backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.backups import catalog
from controlplane.backups.config import RetentionConfig
from controlplane.backups.retention import Candidate, plan
from tests.backups.conftest import MakeEnv
from tests.services.common import run_cli

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday


def _daily(n: int, verified: set[int] = frozenset()) -> list[Candidate]:  # type: ignore[assignment]
    """One backup per day at 02:00, day 0 = today."""
    return [Candidate(f"b{i:02d}", NOW.replace(hour=2) - timedelta(days=i), i in verified)
            for i in range(n)]


def test_keep_last_daily_and_weekly_rules_pick_exact_backups() -> None:
    keep = plan(_daily(40), RetentionConfig(keep_last=2, daily_days=5, weekly_weeks=4), NOW)
    # last 2: b00 b01; daily for 5 days: b00..b04 (b05 is 5 days 10 h old);
    # weekly for 4 weeks: the newest of each ISO week = Thursday's b00, then Sundays b04,
    # b11, b18, and b25 is 25 days 10 h old, within 4 weeks (28 days).
    assert sorted(keep) == ["b00", "b01", "b02", "b03", "b04", "b11", "b18", "b25"]
    assert keep["b01"] == "among the last 2"
    assert keep["b11"] == "newest of week 2026-W46 (weekly for 4 weeks)"


def test_prune_never_deletes_the_newest_verified_backup() -> None:
    keep = plan(_daily(40, verified={30}), RetentionConfig(keep_last=1, daily_days=0,
                                                           weekly_weeks=0), NOW)
    assert keep == {"b00": "among the last 1", "b30": "newest verified backup (never pruned)"}


def _seed(env: object, tmp: Path, n: int) -> list[str]:
    ids = []
    store, blob = env.store, env.blob  # type: ignore[attr-defined]
    for i in range(n):
        bid = f"app-production-{i:02d}"
        started = datetime.now(UTC) - timedelta(days=i * 3)
        names = (f"app/production/{bid}.dump.age", f"app/production/{bid}.manifest.json")
        for name in names:
            blob.put_bytes(name, b"x" * 10)
        with store.session() as s:
            s.add(catalog.BackupRow(id=bid, component="app", env="production",
                                    status="complete", started_at=started,
                                    finished_at=started, blob_name=names[0],
                                    manifest_name=names[1], size_bytes=10,
                                    verified_at=started if i == 5 else None))
        ids.append(bid)
    return ids


def test_prune_dry_run_prints_what_would_go_and_deletes_nothing(
        make_env: MakeEnv, tmp_path: Path) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    env.backups.components["app"].retention = RetentionConfig(keep_last=2, daily_days=0,
                                                              weekly_weeks=0)
    _seed(env, tmp_path, 8)
    cfg = env.config_file()
    dry = run_cli("backup", "prune", "--dry-run", "--config", cfg)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[-1] == "would delete 5 of 8 complete backups"
    marks = [(ln[:12].strip(), ln[13:].split()[0])
             for ln in lines[:8]]
    assert marks == [("keep", "app-production-00"), ("keep", "app-production-01"),
                     ("would delete", "app-production-02"),
                     ("would delete", "app-production-03"),
                     ("would delete", "app-production-04"), ("keep", "app-production-05"),
                     ("would delete", "app-production-06"),
                     ("would delete", "app-production-07")]
    assert "app-production-05" in lines[5] and "newest verified backup (never pruned)" \
        in lines[5]
    assert len(env.blob.list()) == 16
    real = run_cli("backup", "prune", "--config", cfg)
    assert real.returncode == 0, real.stderr
    left = sorted({b.name.split("/")[-1].split(".")[0] for b in env.blob.list()})
    assert left == ["app-production-00", "app-production-01", "app-production-05"]
    with env.store.session() as s:
        statuses = {r.id: r.status for r in catalog.backups(s, "app")}
    assert [k for k, v in sorted(statuses.items()) if v == "pruned"] == [
        "app-production-02", "app-production-03", "app-production-04", "app-production-06",
        "app-production-07"]


@pytest.mark.postgres
def test_a_complete_backup_applies_retention_to_its_component(
        make_env: MakeEnv, source_dsn: str, tmp_path: Path) -> None:
    env = make_env(source_dsn)
    env.backups.components["app"].retention = RetentionConfig(keep_last=2, daily_days=0,
                                                              weekly_weeks=0)
    _seed(env, tmp_path, 4)
    new = env.ops.run_backup("app").details["backup_id"]
    with env.store.session() as s:
        statuses = {r.id: r.status for r in catalog.backups(s, "app")}
    assert statuses == {new: "complete", "app-production-00": "complete",
                        "app-production-01": "pruned", "app-production-02": "pruned",
                        "app-production-03": "pruned"}
    assert sorted({b.name.split("/")[-1].split(".")[0] for b in env.blob.list()}) == [
        "app-production-00", new]


def test_a_failed_backup_prunes_nothing(make_env: MakeEnv, tmp_path: Path) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    env.backups.components["app"].retention = RetentionConfig(keep_last=1, daily_days=0,
                                                              weekly_weeks=0)
    _seed(env, tmp_path, 3)
    assert env.ops.run_backup("app").status.value == "failing"
    assert len(env.blob.list()) == 6
