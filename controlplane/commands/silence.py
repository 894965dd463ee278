"""`controlplane silence add|list|expire`: silences and maintenance windows in the store.

Works on the configured store directly, so it needs no running server; a running
control plane sees the change on its next notification decision.
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime

from sqlalchemy import select

from controlplane.cli import EXIT_ERROR, EXIT_OK, err
from controlplane.commands.core import load_or_report
from controlplane.durations import parse_duration
from controlplane.store import Store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("silence", help="add, list or expire silences (maintenance windows)")
    ssub = p.add_subparsers(dest="silence_command", metavar="ACTION", required=True)

    add = ssub.add_parser("add", help="silence matching incidents for a while")
    _config_arg(add)
    add.add_argument("--check", help="check id to match")
    add.add_argument("--env", help="environment to match")
    add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                     help="label to match (repeatable; all must match)")
    add.add_argument("--comment", required=True, help="why (shown on /silences)")
    add.add_argument("--author", default=None, help="who (default: your login name)")
    add.add_argument("--starts", metavar="TIME", help="ISO time, default now")
    add.add_argument("--until", metavar="TIME", help="ISO end time, e.g. 2026-11-26T23:00Z")
    add.add_argument("--duration", metavar="D", help="length, e.g. 2h (or window length "
                                                     "with --cron)")
    add.add_argument("--cron", metavar="EXPR", help="recurring window start, 5 cron fields "
                                                    "in UTC, e.g. '0 2 * * sun'")
    add.add_argument("--json", action="store_true", help="print the silence as JSON")
    add.set_defaults(handler=cmd_add)

    ls = ssub.add_parser("list", help="list active silences")
    _config_arg(ls)
    ls.add_argument("--all", action="store_true", help="include scheduled, ended and expired")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=cmd_list)

    ex = ssub.add_parser("expire", help="end a silence now")
    _config_arg(ex)
    ex.add_argument("id", type=int, help="silence id (see `controlplane silence list`)")
    ex.set_defaults(handler=cmd_expire)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")


def _store(args: argparse.Namespace) -> Store | None:
    cfg = load_or_report(args.config)
    if cfg is None:
        return None
    return Store(cfg.store.dsn)


def _time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not an ISO time; write 2026-11-26T23:00:00Z") \
            from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def cmd_add(args: argparse.Namespace) -> int:
    from controlplane.incidents import silences

    try:
        labels = dict(_label(x) for x in args.label)
        duration = parse_duration(args.duration) if args.duration else None
        starts, until = _time(args.starts, "--starts"), _time(args.until, "--until")
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    store = _store(args)
    if store is None:
        return EXIT_ERROR
    now = datetime.now(UTC)
    try:
        with store.session() as s:
            row = silences.add(s, check=args.check, env=args.env, labels=labels,
                               comment=args.comment, author=args.author or getpass.getuser(),
                               now=now, starts_at=starts, ends_at=until, cron=args.cron,
                               duration=duration, source="cli")
            data = silences.to_json(row, now)
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    finally:
        store.close()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"silence {data['id']} added" + (f", active until {data['active_until']}"
                                               if data["active"] else ", not active yet"))
    return EXIT_OK


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--label {text!r}: write KEY=VALUE, e.g. --label team=kafka")
    return key, value


def cmd_list(args: argparse.Namespace) -> int:
    from controlplane.incidents import silences
    from controlplane.incidents.model import SilenceRow

    store = _store(args)
    if store is None:
        return EXIT_ERROR
    now = datetime.now(UTC)
    try:
        with store.session() as s:
            rows = (list(s.scalars(select(SilenceRow).order_by(SilenceRow.id))) if args.all
                    else silences.active(s, now))
            data = [silences.to_json(r, now) for r in rows]
    finally:
        store.close()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if not data:
        print("no active silences" if not args.all else "no silences")
        return EXIT_OK
    print(f"{'ID':>4}  {'ACTIVE':<6} {'UNTIL':<22} {'MATCHERS':<40} COMMENT (AUTHOR)")
    for d in data:
        m = d["matchers"]
        matchers = " ".join([f"check={m['check']}"] * bool(m["check"]) +
                            [f"env={m['env']}"] * bool(m["env"]) +
                            [f"{k}={v}" for k, v in sorted(m["labels"].items())])
        until = d["active_until"] or d["ends_at"] or (d["cron"] or "")
        print(f"{d['id']:>4}  {'yes' if d['active'] else 'no':<6} {until:<22} {matchers:<40} "
              f"{d['comment']} ({d['author']})")
    return EXIT_OK


def cmd_expire(args: argparse.Namespace) -> int:
    from controlplane.incidents import silences

    store = _store(args)
    if store is None:
        return EXIT_ERROR
    try:
        with store.session() as s:
            row = silences.expire(s, args.id, datetime.now(UTC))
            found = row is not None
    finally:
        store.close()
    if not found:
        err(f"no silence {args.id}; `controlplane silence list --all` shows the ids")
        return EXIT_ERROR
    print(f"silence {args.id} expired")
    return EXIT_OK
