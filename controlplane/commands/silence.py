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
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_OK, err
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:  # the store (SQLAlchemy) and urllib.request (http.client, email, ssl) load
    # when a command needs them, not when the CLI's parser is built
    import urllib.error

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
    p.add_argument("--url", metavar="URL",
                   help="a running control plane, e.g. http://127.0.0.1:8080 (default: "
                        "$CONTROLPLANE_URL; without it the configured store is used)")
    p.add_argument("--token", metavar="TOKEN",
                   help="admin token for --url (default: $CONTROLPLANE_ADMIN_TOKEN)")


def _url(args: argparse.Namespace) -> str | None:
    url: str | None = args.url or os.environ.get("CONTROLPLANE_URL")
    return url.rstrip("/") if url else None


class _NotFound(ValueError):
    pass


def _api(args: argparse.Namespace, method: str, path: str,
         body: dict[str, Any] | None = None) -> Any:
    """One call to the running control plane; ValueError says what went wrong and what to do."""
    import urllib.error
    import urllib.request

    base = _url(args)
    token = args.token or os.environ.get("CONTROLPLANE_ADMIN_TOKEN")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, base) from None
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"cannot reach {base}: {reason}; check --url or $CONTROLPLANE_URL") \
            from None


def _http_error(exc: urllib.error.HTTPError, base: str | None) -> ValueError:
    if exc.code == 401:
        return ValueError(f"{base} refused the admin token (HTTP 401); pass --token or set "
                          "$CONTROLPLANE_ADMIN_TOKEN")
    try:
        body = json.loads(exc.read())
    except ValueError:
        body = {}
    problems = body.get("problems") if isinstance(body, dict) else None
    message = "; ".join(str(p).removeprefix("body: ") for p in problems) if problems else (
        body.get("error") if isinstance(body, dict) else None) or f"HTTP {exc.code}"
    return (_NotFound if exc.code == 404 else ValueError)(message)


def _store(args: argparse.Namespace) -> Store | None:
    cfg = load_or_report(args.config)
    if cfg is None:
        return None
    from controlplane.store import Store

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
    from controlplane.durations import parse_duration
    from controlplane.incidents import silences

    try:
        labels = dict(_label(x) for x in args.label)
        duration = parse_duration(args.duration) if args.duration else None
        starts, until = _time(args.starts, "--starts"), _time(args.until, "--until")
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    author = args.author or getpass.getuser()
    if _url(args):
        spec = {"matchers": {"check": args.check, "env": args.env, "labels": labels},
                "comment": args.comment, "author": author, "cron": args.cron,
                "duration": duration, "starts_at": starts.isoformat() if starts else None,
                "ends_at": until.isoformat() if until else None}
        try:
            data = _api(args, "POST", "/api/v1/silences", spec)
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

    if _url(args):
        try:
            data = _api(args, "GET", "/api/v1/silences" + ("?all=1" if args.all else ""))[
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
    from controlplane.incidents import silences

    if _url(args):
        try:
            _api(args, "DELETE", f"/api/v1/silences/{args.id}")
            found = True
        except _NotFound:
            found = False
        except ValueError as exc:
            err(str(exc))
            return EXIT_ERROR
    else:
        store = _store(args)
        if store is None:
            return EXIT_ERROR
        try:
            with store.session() as s:
                found = silences.expire(s, args.id, datetime.now(UTC)) is not None
        finally:
            store.close()
    if not found:
        err(f"no silence {args.id}; `controlplane silence list --all` shows the ids")
        return EXIT_ERROR
    print(f"silence {args.id} expired")
    return EXIT_OK
