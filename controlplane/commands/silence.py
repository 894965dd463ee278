"""`controlplane silence add|list|expire`: silences and maintenance windows.

Two ways to reach them: ``--url`` (or ``$CONTROLPLANE_URL``) talks to a running control
plane's ``/api/v1/silences`` with the admin token (``--token`` or
``$CONTROLPLANE_ADMIN_TOKEN``), so an expired silence is acted on at once; without it the
command works on the configured store directly and needs no running server (a running
control plane then sees the change on its next tick).
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_OK, err
from controlplane.commands.adminapi import admin_args, api_url, call, parse_time, remove
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:  # the store (SQLAlchemy) loads when a command needs it
    from controlplane.store import Store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("silence", help="add, list or expire silences (maintenance windows)")
    ssub = p.add_subparsers(dest="silence_command", metavar="ACTION", required=True)

    add = ssub.add_parser("add", help="silence matching incidents for a while")
    admin_args(add)
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
    admin_args(ls)
    ls.add_argument("--all", action="store_true", help="include scheduled, ended and expired")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=cmd_list)

    ex = ssub.add_parser("expire", help="end a silence now")
    admin_args(ex)
    ex.add_argument("id", type=int, help="silence id (see `controlplane silence list`)")
    ex.set_defaults(handler=cmd_expire)


def _store(args: argparse.Namespace) -> Store | None:
    cfg = load_or_report(args.config)
    if cfg is None:
        return None
    from controlplane.store import Store

    return Store(cfg.store.dsn)


def cmd_add(args: argparse.Namespace) -> int:
    from controlplane.durations import parse_duration
    from controlplane.incidents import silences

    try:
        labels = dict(_label(x) for x in args.label)
        duration = parse_duration(args.duration) if args.duration else None
        starts, until = parse_time(args.starts, "--starts"), parse_time(args.until, "--until")
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    author = args.author or getpass.getuser()
    if api_url(args):
        spec = {"matchers": {"check": args.check, "env": args.env, "labels": labels},
                "comment": args.comment, "author": author, "cron": args.cron,
                "duration": duration, "starts_at": starts.isoformat() if starts else None,
                "ends_at": until.isoformat() if until else None}
        try:
            data = call(args, "POST", "/api/v1/silences", spec)
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
        return _print_added(data, args.json)
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    from controlplane.store import Store

    store = Store(cfg.store.dsn)
    now = datetime.now(UTC)
    try:
        with store.session() as s:
            row = silences.add(s, check=args.check, env=args.env, labels=labels,
                               comment=args.comment, author=author,
                               now=now, starts_at=starts, ends_at=until, cron=args.cron,
                               duration=duration, source="cli",
                               known_checks=silences.known_check_ids(cfg))
            data = silences.to_json(row, now)
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    finally:
        store.close()
    return _print_added(data, args.json)


def _print_added(data: dict[str, Any], as_json: bool) -> int:
    if as_json:
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
    from sqlalchemy import select

    from controlplane.incidents import silences
    from controlplane.incidents.model import SilenceRow

    if api_url(args):
        try:
            data = call(args, "GET", "/api/v1/silences" + ("?all=1" if args.all else ""))[
                "silences"]
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
        return _print_list(data, args)
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
    return _print_list(data, args)


def _print_list(data: list[dict[str, Any]], args: argparse.Namespace) -> int:
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
    return remove(args, f"/api/v1/silences/{args.id}", lambda: _expire_on_store(args),
                  what=f"silence {args.id}", done="expired",
                  listing="controlplane silence list --all")


def _expire_on_store(args: argparse.Namespace) -> bool | None:
    from controlplane.incidents import silences

    store = _store(args)
    if store is None:
        return None
    try:
        with store.session() as s:
            return silences.expire(s, args.id, datetime.now(UTC)) is not None
    finally:
        store.close()
