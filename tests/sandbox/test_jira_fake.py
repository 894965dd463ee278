"""The Jira fake speaks REST v2 as the jira package expects it."""

from __future__ import annotations

import pytest
import requests
from jira import JIRA, JIRAError

from controlplane.sandbox.jira_fake import JiraFake, start


def _client(fake: JiraFake, token: str | None = None) -> JIRA:
    return JIRA(server=fake.url, basic_auth=(fake.user, token or fake.token), max_retries=0)


def test_create_search_comment_and_transition(jira_fake: JiraFake) -> None:
    j = _client(jira_fake)
    issue = j.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Task"},
                                   "summary": "s", "labels": ["cp-1"]})
    assert issue.key == "OPS-1"
    found = j.search_issues('project = OPS AND labels = "cp-1" AND statusCategory != Done')
    assert [i.key for i in found] == ["OPS-1"]
    j.add_comment("OPS-1", "hello")
    assert [c.body for c in j.comments("OPS-1")] == ["hello"]
    [done] = j.transitions("OPS-1")
    j.transition_issue("OPS-1", done["id"])
    assert j.issue("OPS-1").fields.status.name == "Done"
    assert j.search_issues('labels = "cp-1" AND statusCategory != Done') == []
    assert j.issue("OPS-1").fields.resolutiondate is not None


def test_field_errors_are_400_with_jira_shape(jira_fake: JiraFake) -> None:
    with pytest.raises(JIRAError) as info:
        _client(jira_fake).create_issue(fields={"project": {"key": "NOPE"},
                                                "issuetype": {"name": "Task"}})
    assert info.value.status_code == 400
    assert info.value.response.json() == {"errorMessages": [], "errors": {
        "project": "valid project is required",
        "summary": "You must specify a summary of the issue."}}


def test_wrong_credentials_get_401(jira_fake: JiraFake) -> None:
    with pytest.raises(JIRAError) as info:
        _client(jira_fake, token="wrong")
    assert info.value.status_code == 401


def test_injected_503_then_healed(jira_fake: JiraFake) -> None:
    j = _client(jira_fake)
    jira_fake.down(503, path="/search")
    with pytest.raises(JIRAError) as info:
        j.search_issues("project = OPS")
    assert info.value.status_code == 503
    jira_fake.heal()
    assert j.search_issues("project = OPS") == []


def test_unsupported_jql_is_a_400(jira_fake: JiraFake) -> None:
    with pytest.raises(JIRAError) as info:
        _client(jira_fake).search_issues("assignee was bob")
    assert info.value.status_code == 400


def test_start_entry_point_serves_until_stopped() -> None:
    url, stop = start("127.0.0.1", 0)
    try:
        assert JIRA(server=url, token_auth="jira-sandbox-token",
                    max_retries=0).server_info()["deploymentType"] == "Server"
    finally:
        stop()


def test_cloud_flavour_pages_the_enhanced_search_and_has_removed_the_old_one() -> None:
    fake = JiraFake(deployment="Cloud")
    fake.start()
    try:
        j = _client(fake)
        assert j.server_info()["deploymentType"] == "Cloud"
        for n in range(3):
            j.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Task"},
                                   "summary": f"s{n}", "labels": ["cp-1"]})
        first = j.enhanced_search_issues('labels = "cp-1" ORDER BY created DESC', maxResults=2)
        assert [i.key for i in first] == ["OPS-3", "OPS-2"]
        rest = j.enhanced_search_issues('labels = "cp-1" ORDER BY created DESC', maxResults=2,
                                        nextPageToken=first.nextPageToken)
        assert ([i.key for i in rest], rest.nextPageToken) == (["OPS-1"], None)
        old = requests.get(f"{fake.url}/rest/api/2/search", params={"jql": "project = OPS"},
                           auth=(fake.user, fake.token), timeout=30)
        assert old.status_code == 410
    finally:
        fake.stop()
