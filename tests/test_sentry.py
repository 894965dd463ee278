"""Sentry: errors from probes and notifiers reach a (local) Sentry with the check tag,
and secrets never leave the process. The endpoint records real SDK envelopes."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from controlplane.incidents.config import OutboxConfig
from controlplane.incidents.model import IncidentRow, OutboxRow
from controlplane.incidents.outbox import OutboxWorker
from controlplane.notifiers.base import Notification, Notifier
from controlplane.sentry import init_sentry
from controlplane.store import Store
from tests.fakeprobes import ScriptedConfig, ScriptedProbe


class SentryEndpoint:
    """Accepts ``POST /api/<project>/envelope/`` and keeps every item."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        endpoint = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                endpoint.raw.append(body)
                lines = body.split(b"\n")
                for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                    if json.loads(header).get("type") == "event":
                        endpoint.events.append(json.loads(payload))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/42"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def sentry() -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint()
    assert init_sentry(endpoint.dsn)
    yield endpoint
    sentry_sdk.init()  # no DSN: the SDK goes quiet again for the other tests
    endpoint.stop()


def _flush() -> None:
    sentry_sdk.flush(timeout=30)


def test_no_dsn_means_no_sentry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert init_sentry(None) is False


def test_a_crashing_probe_is_captured_with_the_check_id_tag(sentry: SentryEndpoint) -> None:
    probe = ScriptedProbe(ScriptedConfig(id="tls-bic-sky-prod", crash=True))
    result = probe.execute()
    assert result.message == "probe crashed: RuntimeError: boom"
    _flush()
    [event] = sentry.events
    assert event["tags"]["check"] == "tls-bic-sky-prod"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["value"] == "boom"


class _BrokenNotifier(Notifier):
    """A notifier with a bug: the worker must report it and keep the entry for a retry."""

    channel = "slack"

    def notify(self, n: Notification) -> dict[str, str]:
        token = "xoxb-very-secret-token"  # a local Sentry would ship with the frame
        raise RuntimeError(f"bug while sending (token={token})")


def test_a_crashing_notifier_is_captured_with_the_check_tag_and_secrets_scrubbed(
        sentry: SentryEndpoint, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    now = datetime.now(UTC)
    with store.session() as s:
        inc = IncidentRow(dedup_key="tls-x/production", check_id="tls-x", env="production",
                          severity="critical", status="failing", opened_at=now, since=now)
        s.add(inc)
        s.flush()
        s.add(OutboxRow(incident_id=inc.id, channel="slack", action="open",
                        payload={"check": "tls-x"}, idempotency_key="k1", created_at=now,
                        next_attempt_at=now))
    worker = OutboxWorker(store, {"slack": _BrokenNotifier()}, OutboxConfig())
    worker.run_once()
    with store.session() as s:
        entry = s.get(OutboxRow, 1)
        assert entry is not None
        assert (entry.state, entry.attempts) == ("pending", 1)
        # What /incidents shows: the error, never the credential in it.
        assert entry.last_error == ("notifier crashed: RuntimeError: bug while sending "
                                    "(token=***)")
    store.close()
    _flush()
    [event] = sentry.events
    assert event["tags"]["check"] == "tls-x"
    raw = b"".join(sentry.raw)
    assert b"xoxb-very-secret-token" not in raw
    assert b"token=***" in raw


def test_error_logs_are_scrubbed_before_they_leave(sentry: SentryEndpoint) -> None:
    logging.getLogger("controlplane.test").error(
        "backup upload failed check=backup-postgres url=postgresql://app:hunter2@db/app "
        "password=hunter2 headers={'Authorization': 'Basic Y3A6aHVudGVyMg=='}")
    _flush()
    [event] = sentry.events
    assert event["tags"]["check"] == "backup-postgres"
    raw = b"".join(sentry.raw)
    assert b"hunter2" not in raw
    assert b"Y3A6aHVudGVyMg" not in raw


def test_the_shapes_the_old_scrubber_missed_never_leave(sentry: SentryEndpoint) -> None:
    secrets = ["pwdvalue1", "passvalue2", "phrase-value-3", "AccKeyValue4==",
               "SasKeyValue5=", "xoxp-11-22-slackvalue6", "redisvalue7", "hostpw8",
               "quoted value 9", "cut;value10"]
    logging.getLogger("controlplane.test").error(
        "store failed check=store-x pwd=pwdvalue1 pass=passvalue2 passphrase=phrase-value-3 "
        "AccountName=a;AccountKey=AccKeyValue4==;EndpointSuffix=x SharedAccessKey=SasKeyValue5= "
        "user=xoxp-11-22-slackvalue6 redis://:redisvalue7@cache:6379 svc:hostpw8@db:5432 "
        "password='quoted value 9' secret=cut;value10")
    _flush()
    [event] = sentry.events
    raw = b"".join(sentry.raw)
    assert [s for s in secrets if s.encode() in raw] == []
    assert event["tags"]["check"] == "store-x"
