"""Fixtures: the Slack and Jira contract fakes on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake


@pytest.fixture
def slack_fake() -> Iterator[SlackFake]:
    fake = SlackFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def jira_fake() -> Iterator[JiraFake]:
    fake = JiraFake()
    fake.start()
    yield fake
    fake.stop()
