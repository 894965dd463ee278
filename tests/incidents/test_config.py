"""Notifier, incident and silence settings are validated with FILE:LINE errors."""

from __future__ import annotations

from pathlib import Path

from tests.services.common import run_cli

BASE = """environments: {production: {}}
check_files: []
"""


def _validate(tmp_path: Path, body: str) -> tuple[int, list[str]]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + body)
    result = run_cli("validate", "--config", str(path))
    return result.returncode, result.stderr.splitlines()


def test_a_valid_notifier_config_validates(tmp_path: Path) -> None:
    code, errors = _validate(tmp_path, """notifiers:
  slack:
    token: xoxb-1
    channel: C0ONCALL
    routes:
      - match: {labels: {team: kafka}, severity: [critical]}
        channel: C0KAFKA
  jira: {server: "https://jira.example.com", token: t, project: OPS, reopen_window: 2h}
silences:
  - matchers: {env: staging}
    comment: weekly patching
    cron: "0 2 * * sun"
    duration: 2h
""")
    assert (code, errors) == (0, [])


def test_invalid_notifier_config_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    code, errors = _validate(tmp_path, """notifiers:
  slack:
    token: xoxb-1
    chanel: C0ONCALL
  jira:
    server: jira.example.com
    token: t
    project: ops
    min_severity: urgent
""")
    path = tmp_path / "controlplane.yaml"
    assert code == 1
    assert errors == [
        f"{path}:5: notifiers.slack.channel: is required; add it",
        f"{path}:6: notifiers.slack.chanel: unknown field; check its spelling or remove it",
        f"{path}:8: notifiers.jira.server: must be the Jira base URL such as "
        "https://example.atlassian.net",
        f"{path}:10: notifiers.jira.project: 'ops' is not a Jira project key: use its capital "
        "letters, as in the issue keys (OPS for OPS-123)",
        f"{path}:11: notifiers.jira.min_severity: Input should be 'critical', 'major' or "
        "'minor'",
    ]


def test_run_refuses_to_start_on_an_invalid_silence(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + """silences:
  - matchers: {env: staging}
    comment: patching
    cron: "61 * * * *"
    duration: 1h
""")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f"{path}:4: silences.0: invalid cron "
                                                    "'61 * * * *'")


def test_run_refuses_to_start_on_an_invalid_notifier_config(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + """notifiers:
  slack:
    token: xoxb-1
    channel: C0ONCALL
    repeat_interval: 10s
""")
    result = run_cli("run", "--config", str(path))
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"{path}:7: notifiers.slack.repeat_interval: must be at least 60s; reminders more "
        "often are noise",
        "controlplane: refusing to start: the configuration is invalid (see above)"])


def test_a_slack_channel_name_stops_start_up_asking_for_the_channel_id(
        tmp_path: Path) -> None:
    # conversations.history (the lookup before a resend) takes only IDs: with a name every
    # retried root message would fail with channel_not_found and never get its thread.
    code, errors = _validate(tmp_path, """notifiers:
  slack:
    token: xoxb-1
    channel: "#ops"
    routes:
      - match: {labels: {team: kafka}}
        channel: kafka-alerts
      - match: {severity: [critical]}
        channel: C0PAGING
""")
    path = tmp_path / "controlplane.yaml"
    assert (code, errors) == (1, [
        f"{path}:6: notifiers.slack.channel: slack channel '#ops' must be a channel ID like "
        "C0123ABCD (channel details → bottom of the About tab), not a name",
        f"{path}:9: notifiers.slack.routes.0.channel: slack channel 'kafka-alerts' must be a "
        "channel ID like C0123ABCD (channel details → bottom of the About tab), not a name",
    ])
