from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import FakeClock, Harness, build, make_config


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def harness(slack_fake: SlackFake, jira_fake: JiraFake, tmp_path: Path,
            clock: FakeClock) -> Iterator[Harness]:
    jira_fake.clock = clock
    h = build(make_config(slack_fake, jira_fake, tmp_path / "cp.db"), clock)
    yield h
    h.close()


@pytest.fixture
def coalescing(slack_fake: SlackFake, jira_fake: JiraFake, tmp_path: Path,
               clock: FakeClock) -> Iterator[Harness]:
    """The harness with ``incidents.coalesce_updates`` on."""
    jira_fake.clock = clock
    cfg = make_config(slack_fake, jira_fake, tmp_path / "cp.db")
    cfg.incidents.coalesce_updates = True
    h = build(cfg, clock)
    yield h
    h.close()
