"""`controlplane oncall now|show|override add|list|remove`: who is on call, and overrides.

``now`` and ``show`` read the config and the configured store. Override changes work on
the store directly, or, with ``--url`` (or ``$CONTROLPLANE_URL``), on a running control
plane's ``/api/v1/oncall/overrides`` with the admin token, like ``controlplane silence``.
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from controlplane.cli import EXIT_ERROR, EXIT_OK, err
from controlplane.commands.adminapi import admin_args, api_url, call, parse_time, remove
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:  # the service and its store load when a command runs: --help stays quick
    from controlplane.oncall.service import OncallService


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("oncall", help="who is on call, the coming shifts, overrides")
    osub = p.add_subparsers(dest="oncall_command", metavar="ACTION", required=True)

    now = osub.add_parser("now", help="who is on call now, per schedule")
    _local_args(now)
    now.add_argument("--schedule", help="one schedule (default: all)")
    now.add_argument("--at", metavar="TIME", help="ISO time instead of now")
    now.set_defaults(handler=cmd_now)

    show = osub.add_parser("show", help="a schedule's shifts, by default the next 4 weeks")
    _local_args(show)
    show.add_argument("schedule", help="schedule id (see `controlplane oncall now`)")
    show.add_argument("--from", dest="start", metavar="TIME", help="ISO time, default now")
    show.add_argument("--days", type=int, default=None,
                      help="how many days ahead (default 28)")
    show.set_defaults(handler=cmd_show)

    ov = osub.add_parser("override", help="add, list or remove overrides")
    vsub = ov.add_subparsers(dest="override_command", metavar="ACTION", required=True)
    add = vsub.add_parser("add", help="put someone on call for a while")
    admin_args(add)
    add.add_argument("--schedule", required=True, help="schedule id")
    add.add_argument("--person", required=True, help="who is on call instead")
    add.add_argument("--covers", help="whom they cover (only their shifts are taken over)")
    add.add_argument("--from", dest="start", metavar="TIME", help="ISO time, default now")
    add.add_argument("--until", metavar="TIME", help="ISO end time")
    add.add_argument("--duration", metavar="D", help="length instead of --until, e.g. 8h")
    add.add_argument("--reason", default="", help="why (shown on /oncall)")
    add.add_argument("--author", help="who (default: your login name)")
    add.add_argument("--json", action="store_true", help="print the override as JSON")
    add.set_defaults(handler=cmd_override_add)

    ls = vsub.add_parser("list", help="overrides that have not ended")
    admin_args(ls)
    ls.add_argument("--schedule", help="one schedule")
    ls.add_argument("--all", action="store_true", help="include ended and removed ones")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=cmd_override_list)

    rm = vsub.add_parser("remove", help="remove an override")
    admin_args(rm)
    rm.add_argument("id", type=int, help="override id (see `controlplane oncall override list`)")
    rm.set_defaults(handler=cmd_override_remove)


def _local_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _service(args: argparse.Namespace) -> OncallService | None:
    from controlplane.oncall.service import OncallService
    from controlplane.store import Store

    cfg = load_or_report(args.config)
    if cfg is None:
        return None
    if not cfg.oncall.schedules:
        err(f"{cfg.source}: no on-call schedules; add them under oncall.schedules "
            "(docs/oncall.md)")
        return None
    return OncallService(cfg.oncall, Store(cfg.store.dsn))


def _local(ts: str, tz: str) -> str:
    when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
    return when.strftime("%a %Y-%m-%d %H:%M %Z")


def cmd_now(args: argparse.Namespace) -> int:
    try:
        at = parse_time(args.at, "--at")
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    svc = _service(args)
    if svc is None:
        return EXIT_ERROR
    try:
        ids = [args.schedule] if args.schedule else sorted(svc.config.schedules)
        data = [svc.schedule_json(sid, at, days=0) for sid in ids]
    except KeyError as exc:
        err(str(exc.args[0]))
        return EXIT_ERROR
    finally:
        svc.store.close()
    if args.json:
        print(json.dumps([{k: d[k] for k in ("id", "name", "timezone", "now")} for d in data],
                         indent=2))
        return EXIT_OK
    width = max(len(d["id"]) for d in data)
    print(f"{'SCHEDULE':<{width}}  {'ON CALL':<24} {'UNTIL':<26} SLACK")
    for d in data:
        cur = d["now"]
        if cur is None:
            print(f"{d['id']:<{width}}  (nobody)")
            continue
        who = cur["person"]
        print(f"{d['id']:<{width}}  {who['name']:<24} {_local(cur['to'], d['timezone']):<26} "
              f"{who['slack'] or ''}".rstrip())
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    try:
        start = parse_time(args.start, "--from")
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    svc = _service(args)
    if svc is None:
        return EXIT_ERROR
    try:
        from controlplane.oncall.service import DEFAULT_DAYS

        days = DEFAULT_DAYS if args.days is None else args.days
        data = svc.schedule_json(args.schedule, start, days=days)
    except KeyError as exc:
        err(str(exc.args[0]))
        return EXIT_ERROR
    finally:
        svc.store.close()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    tz = data["timezone"]
    print(f"{data['name']} ({data['id']}), times in {tz}")
    print(f"{'FROM':<26} {'TO':<26} {'WHO':<24} SOURCE")
    for s in data["shifts"]:
        print(f"{_local(s['from'], tz):<26} {_local(s['to'], tz):<26} "
              f"{s['person']['name']:<24} {s['source']}")
    if not data["shifts"]:
        print("nobody is on call in this period")
    return EXIT_OK


def cmd_override_add(args: argparse.Namespace) -> int:
    try:
        start = parse_time(args.start, "--from") or datetime.now(UTC)
        end = parse_time(args.until, "--until")
        if (end is None) == (args.duration is None):
            raise ValueError("give the end as --until TIME or --duration D (one of them)")
        if end is None:
            from controlplane.durations import parse_duration

            end = start + timedelta(seconds=parse_duration(args.duration))
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    spec: dict[str, Any] = {"schedule": args.schedule, "person": args.person,
                            "covers": args.covers, "from": start.isoformat(),
                            "to": end.isoformat(), "reason": args.reason,
                            "author": args.author or getpass.getuser()}
    if api_url(args):
        try:
            data = call(args, "POST", "/api/v1/oncall/overrides", spec)
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
    else:
        svc = _service(args)
        if svc is None:
            return EXIT_ERROR
        try:
            data = svc.add_override(schedule=args.schedule, person=args.person,
                                    covers=args.covers, starts_at=start, ends_at=end,
                                    reason=args.reason, author=spec["author"], source="cli")
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
        finally:
            svc.store.close()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"override {data['id']} added: {data['person']} on call for {data['schedule']} "
              f"from {data['from']} to {data['to']}")
    return EXIT_OK


def cmd_override_list(args: argparse.Namespace) -> int:
    if api_url(args):
        query = "?all=1" if args.all else ""
        try:
            data = [d for d in call(args, "GET", "/api/v1/oncall/overrides" + query)["overrides"]
                    if args.schedule in (None, d["schedule"])]
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
    else:
        svc = _service(args)
        if svc is None:
            return EXIT_ERROR
        try:
            data = svc.list_overrides(args.schedule, include_old=args.all)
        finally:
            svc.store.close()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if not data:
        print("no overrides")
        return EXIT_OK
    print(f"{'ID':>4}  {'SCHEDULE':<16} {'PERSON':<12} {'COVERS':<12} {'FROM':<21} "
          f"{'TO':<21} REASON (AUTHOR)")
    for d in data:
        gone = " [removed]" if d["removed_at"] else ""
        print(f"{d['id']:>4}  {d['schedule']:<16} {d['person']:<12} {d['covers'] or '-':<12} "
              f"{d['from']:<21} {d['to']:<21} {d['reason']} ({d['author']}){gone}")
    return EXIT_OK


def cmd_override_remove(args: argparse.Namespace) -> int:
    return remove(args, f"/api/v1/oncall/overrides/{args.id}", lambda: _remove_on_store(args),
                  what=f"override {args.id}", done="removed",
                  listing="controlplane oncall override list")


def _remove_on_store(args: argparse.Namespace) -> bool | None:
    svc = _service(args)
    if svc is None:
        return None
    try:
        return svc.remove_override(args.id) is not None
    finally:
        svc.store.close()
