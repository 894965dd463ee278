"""The chaos soak, short: two `controlplane run` instances on one PostgreSQL store, the
sandbox and the Slack/Jira fakes, four minutes of seeded faults (kill -9 of the active
instance, a PostgreSQL restart, Slack 429 then 500, Jira 503, platform faults toggling).

The full 20-minute run is `python -m bench.soak.run --minutes 20 --write` (bench/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak.run import soak
from bench.soak.script import SHORT, make_script

pytestmark = [pytest.mark.postgres, pytest.mark.soak]


def test_the_fault_script_is_the_same_for_the_same_seed_and_names_every_fault() -> None:
    first, again = make_script(7, SHORT), make_script(7, SHORT)
    assert first.events == again.events
    actions = {e.action for e in first.events}
    assert actions == {"kill_active", "pg_restart", "slack_429", "slack_500", "slack_heal",
                       "jira_down", "jira_heal", "fault_set", "fault_clear"}
    assert {e.fault for e in first.events if e.action == "fault_set"} == {
        "sms_dropped", "cert_expiring", "halo_task_500"}
    assert make_script(8, SHORT).events != first.events


# Four minutes of faults plus up to 150 s of drain: past the suite's default 300 s.
@pytest.mark.timeout(600)
def test_a_short_soak_loses_and_duplicates_nothing_with_one_root_and_issue_per_incident(
        tmp_path: Path) -> None:
    figures, _ = soak(seed=1, profile=SHORT, workdir=tmp_path, drain_s=150)
    kills = [t for t in figures.takeovers if t[1] == "kill -9"]
    assert kills and all(t[2] is not None for t in kills), figures.takeovers
    assert all(t[2] is not None for t in figures.takeovers), figures.takeovers
    assert sum(figures.incidents_opened.values()) >= 3, figures.incidents_opened
    assert figures.lost == [] and figures.duplicated == []
    assert figures.one_root_each, figures.slack_roots
    assert figures.one_issue_each, figures.jira_issues
    assert figures.unsent == 0
    assert all(figures.in_order.values()), figures.in_order
