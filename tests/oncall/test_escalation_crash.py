"""Crash safety of escalation in a real `controlplane run`: SIGKILL while a step is being
written and right after it committed; every step still fires exactly once.

The process kills itself through the escalation's test hook
(``CONTROLPLANE_ESCALATION_CRASH_AT``), which sends SIGKILL to its own pid: no cleanup runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from controlplane.oncall.config import OncallConfig
from controlplane.oncall.schedule import on_call
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.incidents.test_crash import ControlPlane, _until
from tests.oncall.test_escalation import ALICE, BOB, CAROL, DANA, FROM, OPS, oncall
from tests.services.common import ROOT, free_port


class EscalatingControlPlane(ControlPlane):
    """`controlplane run` with the escalation's crash hook instead of the outbox's."""

    def start(self, crash_at: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("CONTROLPLANE_ESCALATION_CRASH_AT", None)
        if crash_at:
            env["CONTROLPLANE_ESCALATION_CRASH_AT"] = crash_at
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "--log-level", "INFO", "run",
                 "--config", str(self.config)], env=env, stdout=out, stderr=out)


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioFake, str]]:
    fake = TwilioFake()
    server = AppServer("twilio", fake.app).start()
    yield fake, server.url
    server.stop()
    fake.stop()


def _config(tmp_path: Path, fake: TwilioFake, url: str) -> Path:
    phone = {"account_sid": fake.account_sid, "auth_token": fake.auth_token,
             "from_number": FROM, "to": [OPS], "api_base": url}
    policy = {"steps": [{"notify": ["oncall:primary"], "via": ["sms"]},
                        {"after": "3s", "notify": ["oncall:secondary"], "via": ["sms"]},
                        {"after": "3s", "notify": ["person:manager"], "via": ["sms"]}]}
    cfg = {
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "web": {"port": free_port()},
        "check_files": [],
        # Nothing listens on this port: the check fails on every run.
        "checks": [{"id": "voice360-api", "kind": "http", "env": "production",
                    "url": f"http://127.0.0.1:{free_port()}/healthz", "interval": "1s",
                    "timeout": "2s", "failure_threshold": 1, "severity": "critical"}],
        "notifiers": {"sms": phone},
        "incidents": {"tick_interval": "0.5s",
                      "outbox": {"poll_interval": "0.2s", "backoff_initial": "0.5s"}},
        "oncall": oncall(policies={"all": policy}),
    }
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _steps(db: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT message FROM incident_events WHERE kind = "
                                     "'paged' ORDER BY id")).all()
            return [r[0] for r in rows]
    finally:
        engine.dispose()


def test_sigkill_between_escalation_steps_never_skips_or_repeats_one(
        tmp_path: Path, twilio: tuple[TwilioFake, str]) -> None:
    fake, url = twilio
    cp = EscalatingControlPlane(_config(tmp_path, fake, url), tmp_path / "cp.log")
    db = tmp_path / "cp.db"

    def paged() -> list[str]:
        return [m.to for m in fake.messages if m.to != OPS]

    try:
        # 1. Killed while step 2 is written, before it commits: it must fire after restart.
        cp.start(crash_at="after_step:2")
        cp.wait_killed()
        assert [s.split(":")[0] for s in _steps(db)] == ["step 1/3"]
        # 2. Killed right after step 3 committed, before its page is delivered.
        cp.start(crash_at="between:3")
        cp.wait_killed()
        assert [s.split(":")[0] for s in _steps(db)] == ["step 1/3", "step 2/3", "step 3/3"]
        # 3. A clean run delivers what is left and fires nothing again.
        cp.start()
        _until(lambda: DANA in paged(), "the manager's page")
        time.sleep(3)  # a repeated step would have fired by now (ticks every 0.5 s)
        # The rotation runs on the real clock here: ask it who was on call.
        primary = on_call(OncallConfig.model_validate(oncall(policies={})).schedules[
            "primary"], [], datetime.now(UTC))
        assert primary is not None
        first = {"alice": (ALICE, "Alice Martin"), "bob": (BOB, "Bob Stone")}[primary.person]
        assert sorted(paged()) == sorted([first[0], CAROL, DANA])
        assert _steps(db) == [
            f"step 1/3: paged {first[1]} (on call for primary) via sms",
            "step 2/3: paged Carol Diaz (on call for secondary) via sms",
            "step 3/3: paged Dana Fox via sms"]
    finally:
        cp.stop()
