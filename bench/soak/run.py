"""Chaos soak: two `controlplane run` instances on one PostgreSQL store while a seeded
script of faults runs; prints the figures and, with --write, publishes them.

    python -m bench.soak.run --minutes 20 --seed 1 --write

Faults: kill -9 of the active instance every 1-3 min (restarted at once), a PostgreSQL
restart, Slack answering 429 with Retry-After then 500 for two minutes, Jira down (503)
for five, and the sandbox's SMS dropped / certificate expiring / halo-task 500 toggling.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.scheduler.run import machine, replace_section
from bench.soak.harness import Soak
from bench.soak.measure import Figures, collect
from bench.soak.script import FULL, SHORT, Profile, make_script

log = logging.getLogger(__name__)


def soak(seed: int, profile: Profile, workdir: Path | None = None,
         drain_s: float = 180.0) -> tuple[Figures, Soak]:
    """Run the whole soak and return its figures (the harness is stopped)."""
    own = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="cp-soak-"))
    script = make_script(seed, profile)
    harness = Soak(script, work)
    try:
        harness.start()
        started_at = datetime.now(UTC)
        harness.play()
        harness.heal_all()
        _drain(harness, drain_s)
        figures = collect(harness, started_at)
        if not own:
            _dump(harness, work / "soak.json")
        return figures, harness
    finally:
        harness.stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _drain(harness: Soak, limit: float) -> None:
    """After the last fault: wait until every incident resolved and every entry was sent."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(harness.dsn) as conn:
                open_ = conn.execute("SELECT count(*) FROM incidents WHERE state <> "
                                     "'resolved'").fetchone()
                unsent = conn.execute("SELECT count(*) FROM notification_outbox WHERE "
                                      "state <> 'sent'").fetchone()
            if open_ and unsent and open_[0] == 0 and unsent[0] == 0:
                return
        except psycopg.OperationalError:
            pass
        time.sleep(1.0)
    log.warning("soak: not drained after %.0f s", limit)


def _dump(harness: Soak, path: Path) -> None:
    """The raw material of the figures, for a run to be looked into afterwards."""
    with psycopg.connect(harness.dsn) as conn:
        incidents = conn.execute("SELECT id, check_id, state, opened_at::text, "
                                 "resolved_at::text, refs FROM incidents ORDER BY id").fetchall()
        outbox = conn.execute("SELECT id, incident_id, channel, action, state, attempts, "
                              "created_at::text, sent_at::text, response FROM "
                              "notification_outbox ORDER BY id").fetchall()
    data = {"events": [[t, dataclasses.asdict(e)] for t, e in harness.applied],
            "incidents": incidents, "outbox": outbox,
            "jira": [{"key": i.key, "status": i.status, "labels": i.fields.get("labels"),
                      "created": i.created.isoformat(), "transitions": i.transitions,
                      "comments": len(i.comments)} for i in harness.jira.issues.values()],
            "slack": [{"ts": m.ts, "thread": m.thread_ts, "text": m.text[:120],
                       "meta": (m.metadata or {}).get("event_payload")}
                      for m in harness.slack.messages()]}
    path.write_text(json.dumps(data, indent=1, default=str))


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MB"


def _s(x: float | None) -> str:
    return "none" if x is None else f"{x:.1f} s"


def report(f: Figures, seed: int, minutes: float, load: tuple[str, str]) -> str:
    kills = [t for t in f.takeovers if t[1] == "kill -9"]
    pg = [t for t in f.takeovers if t[1] != "kill -9"]
    exp, got = sum(f.incidents_expected.values()), sum(f.incidents_opened.values())
    expected = f.incidents_expected.items()
    roots = sorted(set(f.slack_roots.values()))
    issues = sorted(set(f.jira_issues.values()))
    lines = [
        "## soak", "",
        f"Machine: {machine()}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`python -m bench.soak.run --minutes {minutes:g} --seed {seed} --write`: "
        f"{f.duration_s / 60:.1f} minutes of faults, then every fault healed and a drain. "
        f"Load average (1, 5, 15 min) at the start {load[0]}, at the end {load[1]} "
        "(the machine's 2 cores were shared with other people's test runs).", "",
        "| measure | value | target |", "|---|---|---|",
        f"| take-over after kill -9 of the active instance ({len(kills)} kills) | p50 "
        f"{_s(f.takeover_p50)}, max {_s(f.takeover_max)} | within one `standby_retry` (5 s) "
        "plus start-up |",
        *[f"| recovery after a PostgreSQL restart (3 s down) | {_s(t[2])} (by {t[3] or '-'}) "
          "| - |" for t in pg],
        f"| scheduled runs missed | {f.runs_missed} of {f.runs_expected} "
        f"({', '.join(f'{c} {n}' for c, n in f.missed_by_check.items())}) | - |",
        f"| incidents opened vs expected from the script | {got} vs {exp} "
        f"({', '.join(f'{c} {f.incidents_opened[c]}/{n}' for c, n in expected)})"
        f"; other checks {sum(f.unexpected_incidents.values())} | equal |",
        f"| Slack roots per incident | {', '.join(map(str, roots)) or '-'} "
        f"({'exactly 1 each' if f.one_root_each else 'NOT 1 each'}) | exactly 1 |",
        f"| Jira issues per incident | {', '.join(map(str, issues)) or '-'} "
        f"({'exactly 1 each' if f.one_issue_each else 'NOT 1 each'}) | exactly 1 |",
        f"| notifications lost | {len(f.lost)} | 0 |",
        f"| notifications duplicated | {len(f.duplicated)} | 0 |",
        *[f"| delivered in order after {k} | {'yes' if v else 'no'} | yes |"
          for k, v in f.in_order.items()],
        f"| outbox entries still unsent after the drain | {f.unsent} | 0 |",
        "", "Memory of each instance process (VmRSS, sampled every 5 s; each process lives "
        "until it is killed, so the growth is measured per process):", "",
        "| instance | process | lived (s) | RSS at start | RSS when first active | "
        "RSS 60 s later | RSS at end | growth from 60 s after first active | ended |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in f.rss:
        growth = ("- (active < 60 s)" if not r["rss_settled"] else
                  f"{100 * (r['rss_end'] / r['rss_settled'] - 1):+.1f} %")
        ended = {None: "still running", -9: "kill -9", 1: "exit 1 (lost lock)"}.get(
            r["exit"], f"exit {r['exit']}")
        lines.append(f"| {r['instance']} | {r['life']} | {r['from_s']:.0f}-{r['to_s']:.0f} | "
                     f"{_mb(r['rss_start'])} | {_mb(r['rss_active_first'])} | "
                     f"{_mb(r['rss_settled'])} | "
                     f"{_mb(r['rss_end'])} | {growth} | {ended} |")
    lines += ["", "Take-overs in order: " + "; ".join(
        f"t={t[0]:.0f} s {t[1]} -> {_s(t[2])} ({t[3] or '-'})" for t in f.takeovers) + "."]
    if f.lost or f.duplicated:
        lines += ["", "Lost or duplicated: " + "; ".join(f.lost + f.duplicated) + "."]
    return "\n".join(lines) + "\n"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="the test's shorter profile")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md's soak section")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, configs)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("twilio", "werkzeug", "urllib3"):  # the sandbox's request logs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    profile = SHORT if args.short else dataclasses.replace(FULL, duration_s=args.minutes * 60)
    start_load = _load()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    figures, _ = soak(args.seed, profile, workdir=args.keep)
    text = report(figures, args.seed, profile.duration_s / 60, (start_load, _load()))
    print(text)
    if args.write:
        replace_section("soak", text)
    return 0 if not figures.lost and not figures.duplicated else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
