"""Crash safety of a real `controlplane run`: SIGKILL between storing and sending, and
between sending and marking sent, for Slack and Jira; still exactly one of each.

The process kills itself at a named point through the outbox's test hook
(``CONTROLPLANE_OUTBOX_CRASH_AT``), which sends SIGKILL to its own pid: no cleanup runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.tlsfixture import NAME, TlsServer
from tests.services.common import ROOT, free_port


@pytest.fixture
def swappable_tls(tmp_path: Path) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path)
    server.use_leaf(days_left=-2)
    server.start()
    yield server
    server.stop()


def _config(tmp_path: Path, tls: TlsServer, slack: SlackFake, jira: JiraFake) -> Path:
    cfg = {
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "web": {"port": free_port()},
        "check_files": [],
        "checks": [{"id": "tls-bic-sky-prod", "kind": "tls", "env": "production",
                    "target": f"127.0.0.1:{tls.port}", "servername": NAME,
                    "ca_file": str(tls.ca_file), "interval": "1s", "timeout": "5s",
                    "failure_threshold": 2, "severity": "critical"}],
        "notifiers": {
            "slack": {"token": slack.token, "base_url": slack.api_url, "channel": "C0ONCALL"},
            "jira": {"server": jira.url, "user": jira.user, "token": jira.token,
                     "project": "OPS"}},
        "incidents": {"outbox": {"poll_interval": "0.2s", "backoff_initial": "0.5s"}},
    }
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class ControlPlane:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, crash_at: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("CONTROLPLANE_OUTBOX_CRASH_AT", None)
        if crash_at:
            env["CONTROLPLANE_OUTBOX_CRASH_AT"] = crash_at
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "--log-level", "INFO", "run",
                 "--config", str(self.config)], env=env, stdout=out, stderr=out)

    def wait_killed(self) -> None:
        assert self.proc is not None
        code = self.proc.wait(timeout=120)
        assert code == -signal.SIGKILL, self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _until(cond: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _outbox(db: Path) -> list[tuple[str, str, str, int]]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT channel, action, state, attempts FROM "
                                     "notification_outbox ORDER BY id")).all()
            return [(r[0], r[1], r[2], r[3]) for r in rows]
    finally:
        engine.dispose()


def test_sigkill_mid_incident_never_loses_or_duplicates_a_notification(
        tmp_path: Path, swappable_tls: TlsServer, slack_fake: SlackFake,
        jira_fake: JiraFake) -> None:
    cp = ControlPlane(_config(tmp_path, swappable_tls, slack_fake, jira_fake), tmp_path / "cp.log")
    db = tmp_path / "cp.db"
    try:
        # Slack and Jira are delivered by separate threads; Jira answers 503 until step 3 so
        # each step kills the process at a known point.
        jira_fake.down(503)
        # 1. Killed after the incident and its notifications are stored, before any send.
        cp.start(crash_at="before_send:slack:open")
        cp.wait_killed()
        assert slack_fake.messages() == [] and jira_fake.issues == {}
        assert _outbox(db)[0] == ("slack", "open", "pending", 0)
        assert _outbox(db)[1][:3] == ("jira", "open", "pending")

        # 2. Killed after Slack accepted the root message, before it was marked sent.
        cp.start(crash_at="after_send:slack:open")
        cp.wait_killed()
        assert len(slack_fake.messages()) == 1
        assert _outbox(db)[0] == ("slack", "open", "pending", 1)

        # 3. Restarted: Slack's entry is found by its metadata key, not posted again; then
        #    killed after Jira created the issue, before it was marked sent.
        jira_fake.heal()
        cp.start(crash_at="after_send:jira:open")
        cp.wait_killed()
        assert list(jira_fake.issues) == ["OPS-1"]
        assert _outbox(db)[1][:3] == ("jira", "open", "pending")

        # 4. Restarted: the JQL search by dedup label finds OPS-1; no second issue.
        cp.start()
        _until(lambda: [e[2] for e in _outbox(db)] == ["sent", "sent"], "delivery")
        assert _outbox(db)[0][:3] == ("slack", "open", "sent")
        assert slack_fake.count("chat.postMessage") == 1
        assert len(slack_fake.messages()) == 1
        assert list(jira_fake.issues) == ["OPS-1"]
        assert jira_fake.count("POST", "/rest/api/2/issue", 201) == 1
        [root] = slack_fake.messages()
        assert root.text == ("[FAILING] tls-bic-sky-prod (production, critical): certificate "
                             "verify failed: certificate has expired (depth 0: "
                             "CN=bic-sky.halo360.ai)")
        cp.stop()

        # 5. Recovery, killed after the resolve reached Slack but before it was recorded.
        swappable_tls.use_leaf(days_left=80)
        cp.start(crash_at="after_send:slack:resolve")
        cp.wait_killed()
        # 6. Restarted: the root is updated again (harmless), the reply is not repeated.
        cp.start()
        _until(lambda: len(_outbox(db)) == 4 and {e[2] for e in _outbox(db)} == {"sent"},
               "resolve delivered")
        [root] = slack_fake.messages(roots_only=True)
        assert root.text.startswith("[RESOLVED] tls-bic-sky-prod")
        replies = slack_fake.messages(thread_ts=root.ts)
        assert len(replies) == 1 and replies[0].text.startswith(
            ":white_check_mark: Resolved after ")
        issue = jira_fake.issue("OPS-1")
        assert (issue.status, issue.transitions) == ("Done", ["Done"])
        assert len(jira_fake.issues) == 1
        log = (tmp_path / "cp.log").read_text()
        assert "notification sent" in log  # the log was written, and holds no credential
        assert slack_fake.token not in log and jira_fake.token not in log
    finally:
        cp.stop()
