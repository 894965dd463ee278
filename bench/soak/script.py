"""The soak's fault script: a seeded, reproducible list of timed fault events.

The same seed and profile always give the same script, so a bad run can be replayed.
Platform faults each hit one check of their own (different environments), so the number of
incidents to expect is simply the number of windows per fault.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# fault name, environment, the check it turns red
PLATFORM_FAULTS: tuple[tuple[str, str, str], ...] = (
    ("sms_dropped", "release", "idcard-sms-release"),
    ("cert_expiring", "staging", "tls-idcard-staging"),
    ("halo_task_500", "production", "http-halo-task-production"),
)


@dataclass(frozen=True)
class Event:
    at_s: float
    action: str  # kill_active, pg_restart, slack_429, slack_500, slack_heal, jira_down,
    # jira_heal, fault_set, fault_clear
    fault: str = ""
    env: str = ""
    check: str = ""


@dataclass(frozen=True)
class Profile:
    duration_s: float = 1200.0
    kill_every: tuple[float, float] = (60.0, 180.0)
    slack_s: float = 120.0       # 429 with Retry-After for the first half, then 500
    jira_s: float = 300.0
    warmup_s: float = 30.0       # no fault before both instances run
    drain_s: float = 60.0        # the last fault window closes this long before the end
    # platform fault windows: (on_min, on_max), (off_min, off_max) per check interval family
    fast_on: tuple[float, float] = (40.0, 80.0)    # http/tls checks every 5 s
    slow_on: tuple[float, float] = (75.0, 120.0)   # the ID-card check every 15 s
    off: tuple[float, float] = (40.0, 90.0)
    retry_after_s: int = 5


FULL = Profile()
SHORT = Profile(duration_s=240.0, kill_every=(45.0, 75.0), slack_s=30.0, jira_s=45.0,
                warmup_s=25.0, drain_s=40.0, fast_on=(30.0, 40.0), slow_on=(60.0, 70.0),
                off=(25.0, 35.0), retry_after_s=3)


@dataclass
class Script:
    seed: int
    profile: Profile
    events: list[Event] = field(default_factory=list)

    def expected_incidents(self) -> dict[str, int]:
        out = {check: 0 for _, _, check in PLATFORM_FAULTS}
        for e in self.events:
            if e.action == "fault_set":
                out[e.check] += 1
        return out

    def windows(self, start: str, end: str) -> list[tuple[float, float]]:
        starts = [e.at_s for e in self.events if e.action == start]
        ends = [e.at_s for e in self.events if e.action == end]
        return list(zip(starts, ends, strict=True))


def make_script(seed: int, profile: Profile) -> Script:
    rng = random.Random(seed)
    p, d = profile, profile.duration_s
    events: list[Event] = []
    pg_at = round(0.45 * d, 1)
    events.append(Event(pg_at, "pg_restart"))
    slack_at = round(0.2 * d, 1)
    events += [Event(slack_at, "slack_429"), Event(slack_at + p.slack_s / 2, "slack_500"),
               Event(slack_at + p.slack_s, "slack_heal")]
    jira_at = round(0.55 * d, 1)
    events += [Event(jira_at, "jira_down"), Event(jira_at + p.jira_s, "jira_heal")]
    t = p.warmup_s + rng.uniform(*p.kill_every) * 0.5
    while t < d - 20:
        if abs(t - pg_at) > 20:  # one fault of the store at a time keeps take-overs readable
            events.append(Event(round(t, 1), "kill_active"))
        t += rng.uniform(*p.kill_every)
    for fault, env, check in PLATFORM_FAULTS:
        on_range = p.slow_on if check.startswith("idcard") else p.fast_on
        t = p.warmup_s + rng.uniform(0, p.off[0])
        while True:
            on = rng.uniform(*on_range)
            if t + on > d - p.drain_s:
                break
            events += [Event(round(t, 1), "fault_set", fault, env, check),
                       Event(round(t + on, 1), "fault_clear", fault, env, check)]
            t += on + rng.uniform(*p.off)
    events.sort(key=lambda e: e.at_s)
    return Script(seed, profile, events)
