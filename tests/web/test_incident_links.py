"""The incident list's Links column: the runbook, the Slack thread and the Jira key, joined
only between links that exist (no empty link before the Jira key)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.web import create_app


def runtime(tmp_path: Path, slack_fake: SlackFake, jira_fake: JiraFake) -> Runtime:
    cfg = {"environments": {"production": {}}, "store": {"dsn": f"sqlite:///{tmp_path}/cp.db"},
           "check_files": [],
           "notifiers": {"slack": {"token": slack_fake.token, "base_url": slack_fake.api_url,
                                   "channel": "C0ONCALL"},
                         "jira": {"server": jira_fake.url, "user": jira_fake.user,
                                  "token": jira_fake.token, "project": "OPS"}}}
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return build_runtime(load_config(str(path)))


@pytest.fixture
def rt(tmp_path: Path, slack_fake: SlackFake, jira_fake: JiraFake) -> Iterator[Runtime]:
    r = runtime(tmp_path, slack_fake, jira_fake)
    yield r
    r.stop(0)


def fail(rt: Runtime, check: CheckConfig) -> None:
    rt.pipeline.process(Result(check=check.id, kind=check.kind, env=check.env,
                               status=Status.FAILING, message="down"), check)
    worker: Any = rt.component("incidents").worker  # type: ignore[union-attr]
    worker.run_once()


def links_cell(client: FlaskClient) -> str:
    html = client.get("/incidents").get_data(as_text=True)
    match = re.search(r'<td class="links">(.*?)</td>', html, re.S)
    assert match, html
    return match.group(1)


def test_incident_without_runbook_shows_slack_then_jira(rt: Runtime) -> None:
    fail(rt, CheckConfig(id="http-api", kind="synthetic", env="production",
                         failure_threshold=1))
    inc = create_app(rt).test_client().get("/api/v1/incidents").get_json()["incidents"][0]
    ts = inc["slack"]["ts"]
    assert links_cell(create_app(rt).test_client()) == (
        f'<a href="https://slack.com/archives/C0ONCALL/p{ts.replace(".", "")}">Slack</a>'
        f' · {inc["jira"]["key"]}')


def test_runbook_id_links_to_the_runbook_page(rt: Runtime) -> None:
    fail(rt, CheckConfig(id="tls-api", kind="synthetic", env="production",
                         failure_threshold=1, runbook="tls-renew"))
    cell = links_cell(create_app(rt).test_client())
    assert cell.startswith('<a href="/runbooks/tls-renew">runbook</a> · <a href="https://slack')
    assert cell.endswith(" · OPS-1")
