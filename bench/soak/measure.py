"""The soak's figures, from the shared store, the fakes and the harness's own records."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from bench.soak.harness import Soak
from controlplane.notifiers.jira import dedup_label

INTERVALS = {"http-halo-task-production": 5.0, "http-voice360-production": 5.0,
             "tls-idcard-staging": 5.0, "dns-idcard-production": 10.0,
             "idcard-sms-release": 15.0}
POSTING = ("open", "update", "reminder", "acknowledge", "resolve")  # Slack posts a message


@dataclass
class Figures:
    duration_s: float
    takeovers: list[tuple[float, str, float | None, str]]  # (at, cause, seconds, by)
    takeover_p50: float | None
    takeover_max: float | None
    runs_expected: int
    runs_missed: int
    missed_by_check: dict[str, int]
    incidents_expected: dict[str, int]
    incidents_opened: dict[str, int]
    unexpected_incidents: dict[str, int]
    slack_roots: dict[int, int]
    jira_issues: dict[int, int]
    lost: list[str]
    duplicated: list[str]
    in_order: dict[str, bool]
    unsent: int
    rss: list[dict[str, Any]] = field(default_factory=list)
    restarts: dict[str, list[int | None]] = field(default_factory=dict)

    @property
    def one_root_each(self) -> bool:
        return bool(self.slack_roots) and set(self.slack_roots.values()) == {1}

    @property
    def one_issue_each(self) -> bool:
        return bool(self.jira_issues) and set(self.jira_issues.values()) == {1}


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]


def collect(soak: Soak, started_at: datetime) -> Figures:
    takes = [(t.at_s, t.cause, t.seconds, t.by) for t in soak.takeovers]
    kills = [t.seconds for t in soak.takeovers if t.cause == "kill -9" and t.seconds is not None]
    incidents = _rows(soak.dsn, "SELECT id, check_id, state, refs, dedup_key FROM incidents "
                                "ORDER BY id")
    outbox = _rows(soak.dsn, "SELECT id, incident_id, channel, action, idempotency_key, state, "
                             "sent_at, created_at FROM notification_outbox ORDER BY id")
    expected = soak.script.expected_incidents()
    opened = Counter(str(r[1]) for r in incidents)
    lost, dup = _slack_delivery(soak, outbox)
    jira_issues, jira_lost = _jira_issues(soak, incidents)
    missed, runs = _missed(soak.dsn, started_at, soak.end_s)
    return Figures(
        duration_s=soak.end_s, takeovers=takes,
        takeover_p50=statistics.median(kills) if kills else None,
        takeover_max=max(kills) if kills else None,
        runs_expected=runs, runs_missed=sum(missed.values()), missed_by_check=missed,
        incidents_expected=expected,
        incidents_opened={c: opened.get(c, 0) for c in expected},
        unexpected_incidents={c: n for c, n in opened.items() if c not in expected},
        slack_roots=_roots(soak, [int(r[0]) for r in incidents]),
        jira_issues=jira_issues, lost=lost + jira_lost, duplicated=dup,
        in_order=_in_order(soak, outbox),
        unsent=sum(1 for r in outbox if r[5] != "sent"),
        rss=_rss(soak), restarts={i.name: [life.exit_code for life in i.lives[:-1]]
                                  for i in soak.instances})


def _keys(soak: Soak) -> list[tuple[str, int, str | None]]:
    """(idempotency key, incident, thread_ts) of every Slack message, in arrival order."""
    out = []
    for m in soak.slack.messages():
        payload = (m.metadata or {}).get("event_payload") or {}
        if "key" in payload:
            out.append((str(payload["key"]), int(payload["incident"]), m.thread_ts))
    return out


def _slack_delivery(soak: Soak, outbox: list[tuple[Any, ...]]) -> tuple[list[str], list[str]]:
    seen = Counter(k for k, _, _ in _keys(soak))
    lost = [f"slack {r[3]} of incident {r[1]} ({r[5]})" for r in outbox
            if r[2] == "slack" and r[3] in POSTING and seen.get(str(r[4]), 0) == 0]
    dup = [f"slack message {k} posted {n} times" for k, n in seen.items() if n > 1]
    return lost, dup


def _roots(soak: Soak, incident_ids: list[int]) -> dict[int, int]:
    roots = Counter(inc for _, inc, thread in _keys(soak) if thread is None)
    return {i: roots.get(i, 0) for i in incident_ids}


def _jira_issues(soak: Soak, incidents: list[tuple[Any, ...]]) -> tuple[dict[int, int],
                                                                        list[str]]:
    """Issues per incident, from the key each incident recorded (``refs.jira.key``): 1 when
    the incident has an issue of its own; an issue no incident recorded is a twin (counted
    against the incident whose dedup label it carries); a key two incidents share counts
    once, for the first, and the second is listed."""
    counts: dict[int, int] = {}
    problems: list[str] = []
    owner: dict[str, int] = {}
    for inc_id, _check, state, refs, _dedup in incidents:
        key = ((refs or {}).get("jira") or {}).get("key")
        if not key:
            counts[int(inc_id)] = 0
            problems.append(f"jira open of incident {inc_id} (no issue recorded)")
            continue
        if key in owner:
            counts[int(inc_id)] = 0
            problems.append(f"jira issue {key} shared by incidents {owner[key]} and {inc_id}")
            continue
        owner[key] = int(inc_id)
        counts[int(inc_id)] = 1
        issue = soak.jira.issues.get(key)
        if state == "resolved" and (issue is None or issue.status != "Done"):
            problems.append(f"jira resolve of incident {inc_id} ({key} "
                            f"{issue.status if issue else 'missing'})")
    by_label = {dedup_label(str(r[4])): int(r[0]) for r in incidents}
    for key, issue in soak.jira.issues.items():
        if key not in owner:
            label = next((lb for lb in issue.fields.get("labels", []) if lb in by_label), "")
            inc = by_label.get(label, -1)
            counts[inc] = counts.get(inc, 0) + 1
            problems.append(f"jira issue {key} created but recorded by no incident")
    return counts, problems


def _in_order(soak: Soak, outbox: list[tuple[Any, ...]]) -> dict[str, bool]:
    """Per outage: the Slack messages of each incident arrived in the order they were queued
    (outbox id order), and Jira's were sent in queue order."""
    ids = {str(r[4]): int(r[0]) for r in outbox}
    per_incident: dict[int, list[int]] = defaultdict(list)
    for key, inc, _ in _keys(soak):
        if key in ids:
            per_incident[inc].append(ids[key])
    slack_ok = all(seq == sorted(seq) for seq in per_incident.values())
    jira: dict[int, list[tuple[Any, int]]] = defaultdict(list)
    for r in outbox:
        if r[2] == "jira" and r[6] is not None:
            jira[int(r[1])].append((r[6], int(r[0])))
    jira_ok = all([i for _, i in sorted(seq)] == sorted(i for _, i in seq)
                  for seq in jira.values())
    return {"Slack 429/500": slack_ok, "Jira down": jira_ok,
            "kill -9 / PostgreSQL restart": slack_ok and jira_ok}


def _missed(dsn: str, started_at: datetime, end_s: float) -> tuple[dict[str, int], int]:
    """Missed runs per check: a gap of n intervals between two stored runs misses n-1.

    Counted over the script's window; a run that was not stored (the store down) counts as
    missed, as the operator cannot tell the difference."""
    rows = _rows(dsn, "SELECT check_id, started_at FROM results ORDER BY check_id, started_at")
    starts: dict[str, list[datetime]] = defaultdict(list)
    for check, at in rows:
        if at >= started_at:
            starts[str(check)].append(at)
    missed, expected = {}, 0
    for check, interval in INTERVALS.items():
        seq = starts.get(check, [])
        expected += int(end_s // interval)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(seq)]
        missed[check] = sum(max(0, round(g / interval) - 1) for g in gaps)
    return missed, expected


def _rss(soak: Soak) -> list[dict[str, Any]]:
    out = []
    for inst in soak.instances:
        for n, life in enumerate(inst.lives):
            if len(life.rss) < 2:
                continue
            first, last = life.rss[0], life.rss[-1]
            active = [s for s in life.rss if s[2] == "active"]
            settled = [s for s in active if active and s[0] >= active[0][0] + 60]
            out.append({"instance": inst.name, "life": n + 1, "pid": life.pid,
                        "from_s": first[0], "to_s": last[0],
                        "rss_start": first[1], "rss_end": last[1],
                        "rss_active_first": active[0][1] if active else None,
                        "rss_settled": settled[0][1] if settled else None,
                        "rss_max": max(s[1] for s in life.rss),
                        "exit": life.exit_code})
    return out
