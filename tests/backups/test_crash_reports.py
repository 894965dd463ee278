"""A crashing backup or drill reaches Sentry once, tagged with its check id, and the
envelope holds no secret: not the DSN password, the age identity or the storage key."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentry_sdk

from controlplane.backups import catalog
from controlplane.results import Status, utcnow
from tests.backups.conftest import MakeEnv
from tests.services.azurite import KEY, Azurite
from tests.services.postgres import PASSWORD
from tests.test_sentry import SentryEndpoint, sentry

__all__ = ["sentry"]

pytestmark = pytest.mark.postgres


def _secrets_absent(endpoint: SentryEndpoint, identity: str) -> None:
    raw = b"".join(endpoint.raw)
    assert PASSWORD.encode() not in raw
    assert identity.encode() not in raw
    assert KEY.encode() not in raw


def test_a_crashing_backup_is_captured_with_the_backup_check_tag_and_no_secret(
        sentry: SentryEndpoint, make_env: MakeEnv, source_dsn: str, tmp_path: Path) -> None:
    env = make_env(source_dsn)
    # The component's folder in the backup store is a file: an OSError nobody expected.
    (tmp_path / "blobs" / "app").write_text("not a folder")
    result = env.ops.run_backup("app")
    assert result.status == Status.FAILING
    assert result.message == ("backup of app failed at crash: NotADirectoryError: [Errno 20] "
                              f"Not a directory: '{tmp_path}/blobs/app/production'")
    assert env.incident_for("backup-app").result is result
    sentry_sdk.flush(timeout=30)
    [event] = sentry.events  # the log line's own event is the same exception: dropped
    assert (event["tags"]["check"], event["tags"]["component"], event["tags"]["job"]) == (
        "backup-app", "app", "backup")
    assert event["exception"]["values"][-1]["type"] == "NotADirectoryError"
    _secrets_absent(sentry, str(env.key.identity))


@pytest.mark.azurite
def test_a_crashing_drill_is_captured_with_the_drill_check_tag_and_no_secret(
        sentry: SentryEndpoint, make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    with env.store.session() as s:  # a catalog entry whose manifest lost its blob name
        s.add(catalog.BackupRow(id="app-production-1", component="app", env="production",
                                status="complete", started_at=utcnow(),
                                manifest={"format": "custom"}))
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == "drill of app failed at crash: KeyError: 'blob'"
    assert env.incident_for("drill-app").result is result
    sentry_sdk.flush(timeout=30)
    [event] = sentry.events
    assert (event["tags"]["check"], event["tags"]["component"], event["tags"]["job"]) == (
        "drill-app", "app", "drill")
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    _secrets_absent(sentry, str(env.key.identity))
