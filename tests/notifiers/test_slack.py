"""Slack specifics: the thread survives a restart, Retry-After is read, routing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.incidents.config import SlackConfig
from controlplane.notifiers.base import Notification, TransportError
from controlplane.notifiers.slack import SlackNotifier, route
from controlplane.results import Status
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import FakeClock, build, make_config, tls_check
from tests.notifiers.test_contract import PAYLOAD


def test_an_update_after_a_restart_lands_in_the_same_thread(tmp_path: Path,
                                                            slack_fake: SlackFake) -> None:
    clock = FakeClock()
    cfg = make_config(slack_fake, None, tmp_path / "cp.db")
    check = tls_check()
    first = build(cfg, clock)
    first.feed(check, Status.FAILING, "expired", runs=2)
    first.deliver()
    first.close()
    second = build(cfg, clock)  # a new process on the same store
    second.feed(check, Status.FAILING, "expired, still")
    second.deliver()
    second.close()
    [root] = slack_fake.messages(roots_only=True)
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        "Update: expired, still"]


def test_rate_limit_reports_the_retry_after_seconds(slack_fake: SlackFake) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    slack_fake.rate_limit(retry_after=17)
    with pytest.raises(TransportError) as info:
        n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 0, datetime.now(UTC)))
    assert (info.value.permanent, info.value.retry_after, info.value.message) == (
        False, 17.0, "slack rate limited (429), retry after 17s")


def test_routes_match_labels_severity_and_env_in_order() -> None:
    cfg = SlackConfig.model_validate({"token": "x", "channel": "C0DEFAULT", "routes": [
        {"match": {"severity": ["critical"], "env": ["production"]}, "channel": "C0PAGE"},
        {"match": {"labels": {"team": "kafka"}}, "channel": "C0KAFKA"}]})
    assert route(cfg, "critical", "production", {"team": "kafka"}) == "C0PAGE"
    assert route(cfg, "major", "production", {"team": "kafka"}) == "C0KAFKA"
    assert route(cfg, "critical", "staging", {}) == "C0DEFAULT"
