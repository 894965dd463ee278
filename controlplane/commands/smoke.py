"""`controlplane smoke --env ENV`: every matching check once, in parallel, for a deploy pipeline.

No store, no web server, no scheduler: the configured checks of one environment run once,
each with its own hard timeout (the scheduler's CheckRunner), one line per check as it ends
and a summary; `--junit FILE` writes the JUnit XML GitHub's test reporters read. Exit 0 only
when none fails. Start-up is kept short (bench/startup): this module imports nothing heavy
at import time, and the probe kinds import their client libraries when a probe runs.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err

if TYPE_CHECKING:
    from controlplane.config import ControlPlaneConfig
    from controlplane.probes.base import CheckConfig, ProbeContext
    from controlplane.results import Result

STORE_KINDS = frozenset({"backup", "drill", "dr"})
"""Kinds that judge the control plane's own backup catalog: they need its store, which a
smoke run has none of, so they are never selected."""

MAX_PARALLEL = 32
DEFAULT_TIMEOUT_S = 120.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "smoke", help="run an environment's checks once, in parallel (post-deploy smoke test)",
        description="Runs every enabled check of ENV once, in parallel, and exits 0 only when "
        "none fails (degraded passes unless --fail-on-degraded). Checks of the kinds "
        + ", ".join(sorted(STORE_KINDS)) + " read the control plane's store and are left out.")
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--env", required=True, help="environment to test (one of `environments`)")
    p.add_argument("--kind", action="append", default=[], metavar="K",
                   help="only checks of this kind (repeatable)")
    p.add_argument("--check", action="append", default=[], metavar="ID",
                   help="only this check (repeatable)")
    p.add_argument("--timeout", default="2m", metavar="DURATION",
                   help="give up on checks still running after this long (default 2m)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report to FILE")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--fail-on-degraded", action="store_true",
                   help="a degraded check fails the smoke test too")
    p.set_defaults(handler=cmd_smoke)


@dataclass
class Outcome:
    """One check's smoke result and whether it fails the run."""

    check: CheckConfig
    result: Result
    failed: bool


@dataclass
class Report:
    env: str
    outcomes: list[Outcome] = field(default_factory=list)
    duration_s: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "degraded": 0, "failing": 0, "error": 0}
        for o in self.outcomes:
            out[o.result.status.value] += 1
        return out

    @property
    def failed(self) -> int:
        return sum(o.failed for o in self.outcomes)

    def summary(self) -> str:
        c = self.counts()
        verdict = "FAILED" if self.failed else "PASSED"
        return (f"smoke {self.env}: {verdict}: {len(self.outcomes)} checks, {c['ok']} ok, "
                f"{c['degraded']} degraded, {c['failing']} failing, {c['error']} error "
                f"in {self.duration_s:.2f}s")


def cmd_smoke(args: argparse.Namespace) -> int:
    from controlplane.durations import parse_duration

    try:
        deadline_s = parse_duration(args.timeout)
    except ValueError as exc:
        err(f"--timeout: {exc}")
        return EXIT_ERROR
    from controlplane.commands.core import load_or_report

    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    try:
        checks = select_checks(cfg, args.env, args.kind, args.check)
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    from controlplane.probes.base import ProbeContext

    context = ProbeContext(environments=dict(cfg.environments))
    line = None if args.json else _print_line
    report = run_smoke(args.env, checks, context, deadline_s, args.fail_on_degraded, line)
    if args.junit:
        try:
            write_junit(report, args.junit)
        except OSError as exc:
            err(f"cannot write the JUnit report {args.junit}: {exc.strerror or exc}")
            return EXIT_ERROR
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report.summary(), flush=True)
    return EXIT_FAILING if report.failed else EXIT_OK


def select_checks(cfg: ControlPlaneConfig, env: str, kinds: list[str],
                  ids: list[str]) -> list[CheckConfig]:
    """The enabled checks of ``env`` matching every filter; ValueError says what is wrong."""
    if env not in cfg.environments:
        raise ValueError(f"no environment {env!r}; you must pass one of: "
                         + ", ".join(sorted(cfg.environments)))
    from controlplane.probes import valid_kinds

    unknown = sorted(set(kinds) - set(valid_kinds()))
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}; valid kinds: " + ", ".join(valid_kinds()))
    store_kinds = sorted(set(kinds) & STORE_KINDS)
    if store_kinds:
        raise ValueError(f"{store_kinds[0]} checks read the control plane's store, which a "
                         "smoke test runs without; use `controlplane backup list` instead")
    known = {c.id: c for c in cfg.checks}
    for check_id in ids:
        if check_id not in known:
            raise ValueError(f"no check with id {check_id!r}; "
                             "`controlplane check list` shows the ids")
        if known[check_id].env != env:
            raise ValueError(f"check {check_id!r} belongs to environment "
                             f"{known[check_id].env or '(platform-wide)'!r}, not {env!r}")
    chosen = [c for c in cfg.checks
              if c.env == env and c.enabled and c.kind not in STORE_KINDS
              and (not kinds or c.kind in kinds) and (not ids or c.id in ids)]
    if not chosen:
        raise ValueError(f"no enabled check of environment {env!r} matches; a smoke test "
                         "that runs nothing would pass without testing anything")
    return chosen


def run_smoke(env: str, checks: list[CheckConfig], context: ProbeContext, deadline_s: float,
              fail_on_degraded: bool,
              on_done: Callable[[Outcome], None] | None = None) -> Report:
    """Run ``checks`` once in parallel (at most MAX_PARALLEL at a time); a check still
    running after ``deadline_s`` is reported as an error. Outcomes keep config order."""
    t0 = time.monotonic()
    done: dict[str, Outcome] = {}
    lock = threading.Condition()
    slots = threading.BoundedSemaphore(MAX_PARALLEL)

    def work(check: CheckConfig) -> None:
        with slots:
            outcome = _run_one(check, context, fail_on_degraded)
        with lock:  # the line is printed before the summary can be
            if check.id in done:  # the deadline already reported it
                return
            done[check.id] = outcome
            if on_done:
                on_done(outcome)
            lock.notify_all()

    for check in checks:
        threading.Thread(target=work, args=(check,), name=f"smoke-{check.id}",
                         daemon=True).start()
    with lock:
        lock.wait_for(lambda: len(done) == len(checks), timeout=deadline_s)
        late = [c for c in checks if c.id not in done]
        for check in late:
            done[check.id] = _timed_out(check, time.monotonic() - t0, deadline_s)
            if on_done:
                on_done(done[check.id])
    return Report(env, [done[c.id] for c in checks], round(time.monotonic() - t0, 3))


def _run_one(check: CheckConfig, context: ProbeContext, fail_on_degraded: bool) -> Outcome:
    from controlplane.results import Result, Status, utcnow
    from controlplane.scheduler import CheckRunner

    started = utcnow()
    try:
        runner = CheckRunner(check, context)
    except Exception as exc:  # a kind whose client library cannot load: an error, not a crash
        result = Result(check=check.id, kind=check.kind, env=check.env, status=Status.ERROR,
                        started_at=started, message=f"probe could not start: {exc}")
        return Outcome(check, result, True)
    try:
        result = runner.run()
    finally:
        runner.close()
    bad = {Status.FAILING, Status.ERROR} | ({Status.DEGRADED} if fail_on_degraded else set())
    return Outcome(check, result, result.status in bad)


def _timed_out(check: CheckConfig, elapsed: float, deadline_s: float) -> Outcome:
    from controlplane.results import Result, Status

    result = Result(check=check.id, kind=check.kind, env=check.env, status=Status.ERROR,
                    duration_s=round(elapsed, 6),
                    message=f"still running when the smoke test's {deadline_s:g}s timeout ended")
    return Outcome(check, result, True)


def _print_line(o: Outcome) -> None:
    r = o.result
    print(f"{r.status.value.upper():<8} {r.duration_s:7.3f}s  {r.check}  {r.message}",
          flush=True)


def report_json(report: Report) -> dict[str, Any]:
    return {"env": report.env, "passed": not report.failed, "duration_s": report.duration_s,
            "counts": report.counts(), "failed": report.failed,
            "results": [o.result.to_json_dict() for o in report.outcomes]}


def write_junit(report: Report, path: str) -> None:
    """JUnit XML as GitHub's reporters read it: one testsuite, one testcase per check;
    failing (and degraded under --fail-on-degraded) is <failure>, error is <error>."""
    from xml.etree import ElementTree as ET

    counts = report.counts()
    suite = ET.Element("testsuite", {
        "name": f"controlplane smoke {report.env}", "tests": str(len(report.outcomes)),
        "failures": str(sum(o.failed and o.result.status.value != "error"
                            for o in report.outcomes)),
        "errors": str(counts["error"]), "skipped": "0", "time": f"{report.duration_s:.3f}"})
    for o in report.outcomes:
        r = o.result
        case = ET.SubElement(suite, "testcase", {
            "classname": f"smoke.{report.env}.{r.kind}", "name": r.check,
            "time": f"{r.duration_s:.3f}"})
        body = "\n".join([f"{r.status.value}: {r.message}"]
                         + [f"{s.status.value} {s.name} {s.duration_s:.3f}s {s.message}"
                            for s in r.steps])
        if r.status.value == "error":
            ET.SubElement(case, "error", {"type": "error", "message": r.message}).text = body
        elif o.failed:
            ET.SubElement(case, "failure", {"type": r.status.value,
                                            "message": r.message}).text = body
        else:
            ET.SubElement(case, "system-out").text = body
    root = ET.Element("testsuites", {"name": "controlplane smoke",
                                     "tests": suite.get("tests", "0"),
                                     "failures": suite.get("failures", "0"),
                                     "errors": suite.get("errors", "0"),
                                     "time": suite.get("time", "0")})
    root.append(suite)
    ET.indent(root)
    with open(path, "wb") as f:
        ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=True)
