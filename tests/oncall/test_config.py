"""The `oncall:` section is validated once, with FILE:LINE errors that say what to write."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config

BASE = "environments: {production: {}}\ncheck_files: []\n"

TWILIO = ('{account_sid: AC0123456789abcdef0123456789abcdef, auth_token: t, '
          'from_number: "+15550199001", to: ["+15550100099"]}')
NOTIFIERS = f"""notifiers:
  slack: {{token: xoxb-1, channel: C0ONCALL}}
  sms: {TWILIO}
  call: {TWILIO}
"""
VALID = NOTIFIERS + """oncall:
  people:
    alice: {name: Alice Martin, slack: U0ALICE01, phone: "+4915112345678",
            email: alice@techhalo.ai, timezone: Europe/Berlin}
    bob: {name: Bob Stone, timezone: America/New_York}
  schedules:
    primary:
      name: Platform primary
      timezone: Europe/Berlin
      layers:
        - {rotation: weekly, handoff: 09:00, start: 2026-11-30, people: [alice, bob]}
        - rotation: custom
          length: 12h
          handoff: "21:00"
          timezone: America/New_York
          start: 2026-11-30
          people: [bob]
          restrictions: [{days: [sat, sun], start: "21:00", end: "09:00"}]
  overrides:
    - {schedule: primary, person: bob, covers: alice, from: "2026-12-24T09:00:00+01:00",
       to: "2026-12-27T09:00:00+01:00", reason: holidays}
  policies:
    kafka:
      match: {labels: {team: kafka}}
      repeat: 2
      steps:
        - {notify: ["channel:slack", "oncall:primary"], via: [slack]}
        - {after: 5m, notify: [person:bob], via: [sms, call]}
"""


def _load(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + body)
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    return [str(p).replace(f"{path}:", "") for p in exc.value.problems]


def test_a_valid_oncall_section_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + VALID)
    oncall = load_config(str(path)).oncall
    first, second = oncall.schedules["primary"].layers
    # An unquoted 09:00 is YAML 1.1's sexagesimal 540; it still means nine o'clock.
    assert (first.handoff, first.shift_seconds, first.timezone) == (time(9), 604800.0, None)
    assert (second.handoff, second.shift_seconds) == (time(21), 43200.0)
    assert oncall.people["bob"].slack is None
    assert oncall.overrides[0].covers == "alice"
    kafka = oncall.effective_policies()["kafka"]
    assert (kafka.repeat, kafka.repeat_after, [st.after for st in kafka.steps]) == (
        2, 600.0, [0.0, 300.0])
    assert kafka.steps[0].channel_targets() == ["slack"]


def test_unknown_people_and_schedules_are_named_at_their_line(tmp_path: Path) -> None:
    assert _load(tmp_path, """oncall:
  people:
    alice: {name: Alice}
  schedules:
    primary:
      layers:
        - {rotation: daily, start: 2026-11-30, people: [alice, zed]}
  overrides:
    - {schedule: secondary, person: alice, covers: bob,
       from: "2026-12-24T09:00:00Z", to: "2026-12-25T09:00:00Z"}
  policies: {}
""") == [
        "9: oncall.schedules.primary.layers.0.people.1: unknown person 'zed'; define them "
        "under oncall.people or use one of: alice",
        "11: oncall.overrides.0.covers: unknown person 'bob'; define them under "
        "oncall.people or use one of: alice",
        "11: oncall.overrides.0.schedule: unknown schedule 'secondary'; use one of: primary"]


def test_bad_values_get_instructions(tmp_path: Path) -> None:
    assert _load(tmp_path, """oncall:
  people:
    Alice: {name: Alice}
    bob: {name: Bob, phone: "0151 1234", slack: "@bob", timezone: Europe/Berln}
  schedules:
    primary:
      layers:
        - {rotation: custom, start: 2026-11-30, people: [bob]}
        - {rotation: weekly, length: 3d, start: 2026-11-30, people: [bob]}
        - {rotation: hourly, handoff: "25:00", start: 2026-11-30, people: [bob]}
""") == [
        "5: oncall.people.Alice: 'Alice' is not a valid id: use lowercase letters, digits, "
        "'.', '_' and '-', starting with a letter or digit (e.g. tls-bic-sky-prod)",
        "6: oncall.people.bob.phone: '0151 1234' is not an E.164 phone number; write + "
        "country code and number without spaces, e.g. \"+4915112345678\" (quoted)",
        "6: oncall.people.bob.slack: '@bob' is not a Slack user id; copy it from the profile "
        "(⋮ → Copy member ID), e.g. U0123ABCD",
        "6: oncall.people.bob.timezone: unknown time zone 'Europe/Berln'; use an IANA name "
        "such as Europe/Berlin, America/New_York or UTC",
        "10: oncall.schedules.primary.layers.0: a custom rotation needs length, e.g. "
        "length: 3d or 12h",
        "11: oncall.schedules.primary.layers.1: length is only for rotation: custom; a "
        "weekly rotation's shifts are one week long",
        "12: oncall.schedules.primary.layers.2.handoff: '25:00' is not a time of day; write "
        "it as HH:MM in 24-hour time, e.g. \"09:00\"",
        "12: oncall.schedules.primary.layers.2.rotation: Input should be 'daily', 'weekly' "
        "or 'custom'"]


def test_an_override_must_end_after_it_starts_and_carry_a_zone(tmp_path: Path) -> None:
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
  overrides:
    - {schedule: primary, person: alice, from: "2026-12-24T09:00:00Z",
       to: "2026-12-23T09:00:00Z"}
    - {schedule: primary, person: alice, from: "2026-12-24T09:00:00",
       to: "2026-12-25T09:00:00"}
""") == ["7: oncall.overrides.0: to must be after from",
         "9: oncall.overrides.1: from and to need a zone, e.g. 2026-12-24T09:00:00+01:00"]


def test_a_schedule_needs_a_layer_and_a_layer_people(tmp_path: Path) -> None:
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules:
    primary: {layers: []}
    secondary: {layers: [{rotation: daily, people: []}]}
""") == ["6: oncall.schedules.primary.layers: List should have at least 1 item after "
         "validation, not 0",
         "7: oncall.schedules.secondary.layers.0.people: List should have at least 1 item "
         "after validation, not 0",
         "7: oncall.schedules.secondary.layers.0.start: is required; add it"]


def test_policy_steps_name_real_targets_and_say_how_to_reach_people(tmp_path: Path) -> None:
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
  policies:
    critical:
      steps:
        - {notify: [oncall:primary]}
        - {notify: [alice], via: [sms]}
        - {notify: [oncall:secondary, person:bob], via: [sms]}
        - {notify: [channel:pager], via: [jira]}
""") == ["9: oncall.policies.critical.steps.0: oncall:primary needs via: the channels that "
         "page people, e.g. via: [sms] or via: [slack]",
         "10: oncall.policies.critical.steps.1.notify: 'alice' is not a target; write "
         "oncall:<schedule>, person:<id> or channel:<name>, e.g. oncall:primary",
         "12: oncall.policies.critical.steps.3.via: 'jira' cannot page a person; use one "
         "of: call, email, slack, sms"]
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
  policies:
    critical:
      steps:
        - {notify: [oncall:secondary, person:bob], via: [sms]}
""") == ["9: oncall.policies.critical.steps.0.notify.0: unknown schedule 'secondary'; use "
         "one of: primary",
         "9: oncall.policies.critical.steps.0.notify.1: unknown person 'bob'; use one of: "
         "alice"]
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
  policies: {critical: {steps: [{notify: [channel:pager]}]}}
""") == ["6: oncall.policies.critical.steps.0: channel:pager is not a channel; use one of: "
         "call, email, jira, slack, sms, webhook"]


def test_the_default_policy_says_which_schedules_and_people_it_needs(tmp_path: Path) -> None:
    hint = ("(the default escalation policy pages oncall:primary, oncall:secondary and "
            "person:manager; define them, or write your own oncall.policies, or "
            "policies: {} for none)")
    assert _load(tmp_path, """oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
""") == [f"4: oncall.people: unknown person 'manager'; use one of: alice {hint}",
         f"5: oncall.schedules: unknown schedule 'secondary'; use one of: primary {hint}"]


def test_a_policy_pages_only_through_configured_channels(tmp_path: Path) -> None:
    assert _load(tmp_path, """notifiers:
  slack: {token: xoxb-1, channel: C0ONCALL}
oncall:
  people: {alice: {name: Alice}}
  schedules: {primary: {layers: [{rotation: daily, start: 2026-11-30, people: [alice]}]}}
  policies:
    critical:
      steps:
        - {notify: ["channel:jira", "oncall:primary"], via: [slack, sms]}
""") == ["11: oncall.policies.critical.steps.0.notify.0: channel jira is not configured; add "
         "it under notifiers (docs/channels.md) or page through one that is: slack",
         "11: oncall.policies.critical.steps.0.via.1: channel sms is not configured; add it "
         "under notifiers (docs/channels.md) or page through one that is: slack"]
