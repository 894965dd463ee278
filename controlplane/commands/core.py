"""`validate`, `run` and `check list|run`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err

if TYPE_CHECKING:  # pydantic and every config model load when a command reads the config
    from controlplane.config import ControlPlaneConfig

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="validate the configuration and exit")
    _config_arg(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("run", help="run the scheduler and the web server")
    _config_arg(p)
    p.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="list or run configured checks")
    csub = check.add_subparsers(dest="check_command", metavar="ACTION", required=True)
    p = csub.add_parser("list", help="list configured checks")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_check_list)
    p = csub.add_parser("run", help="run one check now and print its result")
    _config_arg(p)
    p.add_argument("id", help="check id (see `controlplane check list`)")
    p.add_argument("--json", action="store_true", help="print the Result as JSON")
    p.set_defaults(handler=cmd_check_run)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")


def load_or_report(path: str | None) -> ControlPlaneConfig | None:
    from controlplane.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    from controlplane.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_ERROR if exc.unreadable else EXIT_FAILING
    from controlplane.web.twilio_webhook import webhook_warnings

    for warning in webhook_warnings(cfg.checks):
        print(f"{cfg.source}: warning: {warning}", file=sys.stderr)
    print(f"{cfg.source}: valid ({len(cfg.checks)} checks, "
          f"{len(cfg.environments)} environments"
          + (f", {len(cfg.runbooks)} runbooks)" if cfg.runbooks else ")"))
    return EXIT_OK


def cmd_check_list(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    rows = [{"id": c.id, "kind": c.kind, "env": c.env, "interval_s": c.interval,
             "enabled": c.enabled, "builtin": cfg.builtin_feature(c.id)} for c in cfg.checks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max((len(c.id) for c in cfg.checks), default=2)
    print(f"{'ID':<{width}}  {'KIND':<14} {'ENV':<11} INTERVAL")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['kind']:<14} {r['env']:<11} {r['interval_s']:g}s"
              + ("" if r["enabled"] else "  (disabled)")
              + (f"  (built in: {r['builtin']})" if r["builtin"] else ""))
    return EXIT_OK


def cmd_check_run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    try:
        check = cfg.check(args.id)
    except KeyError:
        err(f"no check with id {args.id!r}; `controlplane check list` shows the ids")
        return EXIT_ERROR
    from controlplane.commands.probe import run_and_print
    from controlplane.probes.base import ProbeContext, Services

    services = Services(dr=cfg.dr)
    if cfg.builtin_feature(check.id):
        # Built-in checks read the control plane's own store (the backup catalog).
        from controlplane.store import Store
        from controlplane.store.db import StoreUnavailable

        try:
            services.store = Store(cfg.store.dsn)
        except StoreUnavailable as exc:
            err(str(exc))
            return EXIT_ERROR
    try:
        return run_and_print(check, ProbeContext(environments=dict(cfg.environments),
                                                 services=services), args.json)
    finally:
        if services.store is not None:
            services.store.close()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        err("refusing to start: the configuration is invalid (see above)")
        return EXIT_ERROR
    from controlplane.server import LeadershipLost, serve
    from controlplane.store.db import StoreUnavailable

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received signum=%d; shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve(cfg, stop, on_ready=lambda url: print(
            f"controlplane: serving on {url} ({len(cfg.checks)} checks)", flush=True))
    except StoreUnavailable as exc:
        err(f"refusing to start: {exc}")
        return EXIT_ERROR
    except LeadershipLost as exc:
        err(str(exc))
        return EXIT_FAILING
    print("controlplane: stopped", flush=True)
    return EXIT_OK
