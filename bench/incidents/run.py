"""Detection-to-Slack latency: from the result that crosses a check's failure threshold
reaching the pipeline, to the Slack fake accepting the incident's root message.

Runs the real pipeline, incident service and outbox worker thread (Slack and Jira both
configured, SQLite store) against the contract fakes on loopback.

    python -m bench.incidents.run [--sequential 30] [--burst 50] [--write]

Scenarios: ``sequential`` opens one incident at a time; ``burst`` has N checks cross
their threshold together (the worst case for one worker: Jira calls share its thread).
Target (issue 4): <= 2 s beyond the threshold runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from typing import Any

from bench.scheduler.run import machine, replace_section
from controlplane.app import build_runtime
from controlplane.config import ControlPlaneConfig
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import Message, SlackFake

THRESHOLD = 2
TARGET_S = 2.0


class Bench:
    def __init__(self) -> None:
        self.slack, self.jira = SlackFake(), JiraFake()
        self.slack.start()
        self.jira.start()
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        self.slack.on_message = self._on_message
        tmp = tempfile.mkdtemp()
        cfg = ControlPlaneConfig.model_validate({
            "environments": {"production": {}}, "store": {"dsn": f"sqlite:///{tmp}/b.db"},
            "notifiers": {
                "slack": {"token": self.slack.token, "base_url": self.slack.api_url,
                          "channel": "C0ONCALL"},
                "jira": {"server": self.jira.url, "user": self.jira.user,
                         "token": self.jira.token, "project": "OPS"}}})
        self.rt = build_runtime(cfg)
        self.component: Any = self.rt.component("incidents")
        self.component.start()

    def _on_message(self, m: Message) -> None:
        if m.thread_ts is None:
            check = m.text.split("] ", 1)[1].split(" ", 1)[0]
            with self.cond:
                self.arrived[check] = time.monotonic()
                self.cond.notify_all()

    def cross_threshold(self, check: CheckConfig) -> float:
        """Feed the runs below the threshold, then the crossing one; returns its time."""
        for i in range(THRESHOLD):
            if i == THRESHOLD - 1:
                t0 = time.monotonic()
            self.rt.pipeline.process(Result(check=check.id, kind=check.kind, env=check.env,
                                            status=Status.FAILING,
                                            message="certificate expired"), check)
        return t0

    def wait(self, ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(i in self.arrived for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"root messages missing for {len(ids)} checks")
                self.cond.wait(left)

    def close(self) -> None:
        self.component.stop()
        self.rt.store.close()
        self.slack.stop()
        self.jira.stop()


def _check(name: str) -> CheckConfig:
    return CheckConfig(id=name, kind="bench", env="production", severity="critical",
                       failure_threshold=THRESHOLD)


def sequential(b: Bench, n: int) -> list[float]:
    out = []
    for i in range(n):
        check = _check(f"seq-{i}")
        t0 = b.cross_threshold(check)
        b.wait([check.id])
        out.append(b.arrived[check.id] - t0)
    return out


def burst(b: Bench, n: int) -> list[float]:
    checks = [_check(f"burst-{i}") for i in range(n)]
    starts = {c.id: b.cross_threshold(c) for c in checks}
    b.wait(list(starts))
    return [b.arrived[cid] - t0 for cid, t0 in starts.items()]


def summary(name: str, lat: list[float]) -> dict[str, Any]:
    lat = sorted(lat)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    return {"scenario": name, "n": len(lat), "p50_ms": round(statistics.median(lat) * 1e3, 1),
            "p95_ms": round(p95 * 1e3, 1), "max_ms": round(lat[-1] * 1e3, 1),
            "within_target": lat[-1] <= TARGET_S}


def write_results(rows: list[dict[str, Any]]) -> None:
    head = ("| scenario | incidents | p50 | p95 | max | max <= 2 s |\n"
            "|---|---|---|---|---|---|\n")
    lines = "".join(f"| {r['scenario']} | {r['n']} | {r['p50_ms']} ms | {r['p95_ms']} ms | "
                    f"{r['max_ms']} ms | {'yes' if r['within_target'] else 'NO'} |\n"
                    for r in rows)
    section = (f"## incidents\n\nMachine: {machine()}. Run {time.strftime('%Y-%m-%d')} with "
               "`python -m bench.incidents.run --write`. Detection-to-Slack latency: from "
               f"the result that crosses the failure threshold ({THRESHOLD} runs) entering "
               "the pipeline to the Slack fake accepting the root message; real pipeline, "
               "SQLite store, durable outbox (one worker thread per channel), Slack and Jira "
               "both configured, "
               "contract fakes on loopback in the same process. Target: <= 2 s.\n\n"
               + head + lines)
    replace_section("incidents", section)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=30)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    b = Bench()
    try:
        rows = [summary("sequential", sequential(b, args.sequential)),
                summary(f"burst of {args.burst}", burst(b, args.burst))]
    finally:
        b.close()
    for r in rows:
        print(r)
    if args.write:
        write_results(rows)
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
