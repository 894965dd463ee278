"""`runbook list|show|run|runs|approve|cancel`.

``run`` queues a run; when this process may execute runbooks (SQLite, or no other
instance holds the PostgreSQL lock) it runs it here, otherwise the active instance picks
it up and ``--follow`` watches it. ``--dry-run`` prints every step's plan and changes
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:
    from controlplane.config import ControlPlaneConfig
    from controlplane.runbooks.config import RunbookConfig

    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    rb = sub.add_parser("runbook", help="list, show, run, approve and cancel runbooks")
    rsub = rb.add_subparsers(dest="runbook_command", metavar="ACTION", required=True)
    p = _add(rsub, "list", "the runbooks, their owner and last run", cmd_list)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _add(rsub, "show", "a runbook's parameters and steps", cmd_show)
    p.add_argument("id")
    p = _add(rsub, "run", "run a runbook (or print its plan with --dry-run)", cmd_run)
    p.add_argument("id")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a parameter value (repeat for several)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--follow", action="store_true", help="print steps as they run")
    p.add_argument("--by", default=_user(), help="who starts it (default: $USER)")
    p = _add(rsub, "runs", "recent runs (of one runbook)", cmd_runs)
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _add(rsub, "status", "one run with its steps, outputs and approvals", cmd_status)
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _add(rsub, "approve", "approve the step a run waits on (an approval, or an "
                              "interrupted step that did complete)", cmd_approve)
    p.add_argument("run", type=int)
    p.add_argument("--reject", action="store_true", help="reject (the step fails)")
    p.add_argument("--comment", default="")
    p.add_argument("--by", default=_user(), help="who decides (default: $USER)")
    p = _add(rsub, "cancel", "cancel a run", cmd_cancel)
    p.add_argument("run", type=int)
    p.add_argument("--by", default=_user(), help="who cancels (default: $USER)")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def _add(sub: Sub, name: str, help_: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_)
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.set_defaults(handler=_exit_code(handler))
    return p


def _exit_code(handler: Any) -> Any:
    """Helpers stop a command with SystemExit(code) after reporting; return the code."""
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = handler(args)
        except SystemExit as exc:
            return int(exc.code or 0)
        return code

    return run


def _config(args: argparse.Namespace) -> ControlPlaneConfig:
    cfg = load_or_report(args.config)
    if cfg is None:
        raise SystemExit(EXIT_ERROR)
    return cfg


def _runbook(cfg: ControlPlaneConfig, rb_id: str) -> RunbookConfig:
    try:
        return cfg.runbook(rb_id)
    except KeyError:
        err(f"no runbook {rb_id!r}; `controlplane runbook list` shows them: "
            + (", ".join(r.id for r in cfg.runbooks) or "none defined"))
        raise SystemExit(EXIT_ERROR) from None


def _store(cfg: ControlPlaneConfig) -> Any:
    from controlplane.store import Store

    return Store(cfg.store.dsn)


def cmd_list(args: argparse.Namespace) -> int:
    from controlplane.runbooks import runs

    cfg = _config(args)
    store = _store(cfg)
    last = runs.last_runs(store)
    rows: list[dict[str, Any]] = [
        {"id": r.id, "title": r.title, "owner": r.owner, "steps": len(r.steps),
         "schedule": r.schedule, "auto": r.auto, "last_run": last.get(r.id)}
        for r in cfg.runbooks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max((len(r.id) for r in cfg.runbooks), default=2)
    print(f"{'ID':<{width}}  {'OWNER':<16} {'STEPS':>5}  LAST RUN")
    for r in rows:
        lr = r["last_run"]
        last_text = f"#{lr['id']} {lr['status']} {lr['created_at']}" if lr else "never"
        print(f"{r['id']:<{width}}  {r['owner']:<16} {r['steps']:>5}  {last_text}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    cfg = _config(args)
    rb = _runbook(cfg, args.id)
    print(f"{rb.id}: {rb.title}\nowner: {rb.owner}")
    if rb.description:
        print(rb.description.strip())
    print(f"concurrency: {rb.concurrency.limit} at a time, {rb.concurrency.when_busy} when "
          f"busy; timeout {rb.timeout:g}s" + (f"; schedule {rb.schedule}" if rb.schedule
                                               else "") + ("; auto" if rb.auto else ""))
    for name, p in rb.parameters.items():
        default = "" if p.default is None else f" = {p.default}"
        values = f" one of {', '.join(p.values)}" if p.values else ""
        print(f"  param {name}: {p.type}{values}{default}  {p.description}")
    for i, st in enumerate(rb.steps, 1):
        _print_step(f"{i}.", st)
        for rbk in st.rollback:
            _print_step("   rollback:", rbk)
    return EXIT_OK


def _print_step(prefix: str, st: Any) -> None:
    flags = [f"timeout {st.timeout_s():g}s"] + (["idempotent"] if st.idempotent else [])
    if st.when:
        flags.append(f"when {st.when}")
    if isinstance(st.on_failure, str):
        flags.append(f"on failure {st.on_failure}")
    print(f"{prefix} {st.id}  {st.action} {json.dumps(st.args)}  ({', '.join(flags)})")


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err(f"--param {pair!r}: write it as NAME=VALUE")
            raise SystemExit(EXIT_ERROR)
        out[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    rb = _runbook(cfg, args.id)
    from controlplane.app import build_runtime

    runtime = build_runtime(cfg)
    try:
        if args.dry_run:
            return _dry_run(runtime, rb, _params(args.param))
        return _run(runtime, rb, args)
    finally:
        runtime.stop(0)


def _dry_run(runtime: Any, rb: RunbookConfig, given: dict[str, str]) -> int:
    from controlplane.runbooks.plan import plan

    try:
        lines = plan(runtime, rb, given)
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    print("\n".join(lines))
    return EXIT_OK


def _run(runtime: Any, rb: RunbookConfig, args: argparse.Namespace) -> int:
    from controlplane.leader import Leadership
    from controlplane.runbooks import runs
    from controlplane.runbooks.component import engine_for

    engine = engine_for(runtime)
    try:
        started = runs.start(runtime.store, rb, _params(args.param), args.by, "cli")
    except runs.RunRefused as exc:
        err(str(exc))
        return EXIT_ERROR
    run_id = started.run_id
    print(f"run {run_id} of {rb.id} queued", flush=True)
    lead = Leadership(runtime.store, runtime.config.store.standby_retry, lambda: None,
                      lambda: None)
    lead.start()
    lead.stop_trying()
    try:
        if lead.active and engine.claim(run_id):
            watcher = _Watcher(runtime.store, run_id, args.follow)
            watcher.start()
            with _graceful_stop(engine, runtime.config.scheduler.grace_period):
                engine.execute(run_id)
            watcher.stop()
        elif args.follow:
            print("another instance runs it; following", flush=True)
            _Watcher(runtime.store, run_id, True).run_until_done()
        else:
            print(f"the active instance runs it: `controlplane runbook status {run_id}`")
            return EXIT_OK
    finally:
        lead.release()
    return _summary(runtime.store, run_id)


@contextlib.contextmanager
def _graceful_stop(engine: Any, grace: float) -> Iterator[None]:
    """SIGTERM (or Ctrl-C) while this process executes the run: the step in flight may
    finish within the scheduler's grace period, as under `controlplane run`; then the run
    waits, queued or interrupted, for the next start (docs/runbooks.md)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may take signals (tests call main() in threads)
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"signal {signum}: letting the step in flight finish (up to {grace:g}s)",
              file=sys.stderr, flush=True)
        engine.drain(time.monotonic() + grace)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _summary(store: Any, run_id: int) -> int:
    from controlplane.runbooks import runs

    run = runs.get(store, run_id)
    print(f"run {run_id} {run['status']}: {run['message']}")
    return EXIT_OK if run["status"] == "succeeded" else EXIT_FAILING


class _Watcher:
    """Prints step changes (and progress on stderr) while a run goes on."""

    def __init__(self, store: Any, run_id: int, verbose: bool) -> None:
        self.store, self.run_id, self.verbose = store, run_id, verbose
        self.seen: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def run_until_done(self) -> None:
        while not self.poll():
            time.sleep(0.5)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> bool:
        from controlplane.runbooks import runs

        run = runs.get(self.store, self.run_id)
        for st in run["steps"]:
            key = (st["step"], st["rollback_of"] or "")
            state = f"{st['status']}:{st['attempt']}"
            if self.seen.get(key) != state:
                self.seen[key] = state
                if self.verbose:
                    took = f" in {st['duration_s']:g}s" if st["duration_s"] is not None else ""
                    rb = f" (rollback of {st['rollback_of']})" if st["rollback_of"] else ""
                    print(f"  {st['step']}{rb}: {st['status']}{took}  {st['message']}",
                          flush=True)
            elif self.verbose and st["progress"] and st["status"] == "running":
                prog = ", ".join(f"{k}={v}" for k, v in st["progress"].items() if k != "at")
                print(f"    {st['step']}: {prog}", file=sys.stderr, flush=True)
        return run["status"] in ("succeeded", "failed", "cancelled", "timed_out",
                                 "interrupted")


def cmd_runs(args: argparse.Namespace) -> int:
    from controlplane.runbooks import runs

    cfg = _config(args)
    rows = runs.history(_store(cfg), args.id)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        print(f"#{r['id']:<5} {r['runbook']:<24} {r['status']:<16} {r['created_at']}  "
              f"by {r['started_by']} ({r['trigger']})  {r['message']}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from controlplane.runbooks import runs

    cfg = _config(args)
    try:
        run = runs.get(_store(cfg), args.run)
    except runs.NotFound as exc:
        err(str(exc))
        return EXIT_ERROR
    if args.json:
        print(json.dumps(run, indent=2))
        return EXIT_OK
    print(f"run {run['id']} of {run['runbook']}: {run['status']}  {run['message']}")
    print(f"started by {run['started_by']} ({run['trigger']}) params {json.dumps(run['params'])}")
    for st in run["steps"]:
        print(f"  {st['step']:<20} {st['status']:<16} {st['message']}")
    for d in run["decisions"]:
        verb = "approved" if d["approved"] else "rejected"
        print(f"  {d['step']} {verb} by {d['by']} via {d['via']} at {d['at']}")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    from controlplane.runbooks import runs

    cfg = _config(args)
    try:
        step = runs.decide(_store(cfg), args.run, not args.reject, args.by, "cli", args.comment)
    except (runs.NotFound, runs.RunRefused) as exc:
        err(str(exc))
        return EXIT_ERROR
    print(f"run {args.run}: step {step} {'rejected' if args.reject else 'approved'} by "
          f"{args.by}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from controlplane.runbooks import runs
    from controlplane.runbooks.audit import Audit

    cfg = _config(args)
    try:
        status = runs.cancel(_store(cfg), args.run, args.by, [Audit(cfg).on_finish])
    except (runs.NotFound, runs.RunRefused) as exc:
        err(str(exc))
        return EXIT_ERROR
    print(f"run {args.run}: {'cancelled' if status == 'cancelled' else 'cancel requested'}")
    return EXIT_OK
