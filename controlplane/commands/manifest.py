"""`manifest show|history|diff`: the release manifests `release_drift` checks record."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_OK, err
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:
    from controlplane.store import Store

    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    m = sub.add_parser("manifest", help="release manifests: images and Helm revisions per env")
    msub = m.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)
    p = _add(msub, "show", "the newest manifest of an environment", cmd_show)
    p.add_argument("--env", required=True)
    p = _add(msub, "history", "every recorded manifest of an environment, newest first",
             cmd_history)
    p.add_argument("--env", required=True)
    p.add_argument("--limit", type=int, default=20)
    p = _add(msub, "diff", "compare two environments, or one with itself --since a time",
             cmd_diff)
    p.add_argument("env_a", metavar="ENV_A")
    p.add_argument("env_b", metavar="ENV_B", nargs="?")
    p.add_argument("--since", metavar="WHEN",
                   help="compare ENV_A now with ENV_A then: a look-back (7d, 12h) or ISO time")


def _add(sub: Sub, name: str, help_: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_)
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=handler)
    return p


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store | None]:
    cfg = load_or_report(args.config)
    if cfg is None:
        yield None
        return
    from controlplane.store import Store
    from controlplane.store.db import StoreUnavailable

    try:
        store = Store(cfg.store.dsn)
    except StoreUnavailable as exc:
        err(str(exc))
        yield None
        return
    try:
        yield store
    finally:
        store.close()


def _none_yet(store: Store, env: str) -> int:
    from controlplane.manifest import store as manifests

    known = manifests.environments(store)
    err(f"no manifest recorded for {env!r}; recorded: {', '.join(known) or 'none'} "
        "(a release_drift check records them)")
    return EXIT_ERROR


def cmd_show(args: argparse.Namespace) -> int:
    from controlplane.manifest import store as manifests

    with _store(args) as store:
        if store is None:
            return EXIT_ERROR
        m = manifests.latest(store, args.env)
        if m is None:
            return _none_yet(store, args.env)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        for line in _show_lines(m):
            print(line)
    return EXIT_OK


def _show_lines(m: dict[str, Any]) -> list[str]:
    from controlplane.manifest.compare import label

    lines = [f"{m['env']}  manifest {m['id']}  recorded {m['recorded_at']}"
             + (f"  by {m['source']}" if m["source"] else "")]
    services = m["services"]
    width = max((len(n) for n in services), default=0)
    for name, s in services.items():
        helm = ""
        if s.get("helm_release"):
            rev = s.get("helm_revision")
            helm = f"  helm {s['helm_release']} " + (f"rev {rev}" if rev is not None
                                                      else "(no deployed revision)")
        digest = f"  {s['digest']}" if s.get("digest") else ""
        lines.append(f"  {name:<{width}}  {label(s)}{digest}{helm}")
    return lines


def cmd_history(args: argparse.Namespace) -> int:
    from controlplane.manifest import store as manifests
    from controlplane.manifest.compare import label

    with _store(args) as store:
        if store is None:
            return EXIT_ERROR
        rows = manifests.history(store, args.env, args.limit)
        if not rows:
            return _none_yet(store, args.env)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for m in rows:
        images = ", ".join(f"{n} {label(s)}" for n, s in m["services"].items())
        print(f"{m['recorded_at']}  #{m['id']}  {images}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from controlplane.manifest import store as manifests
    from controlplane.manifest.compare import diff, diff_lines

    if (args.env_b is None) == (args.since is None):
        err("give ENV_B, or --since WHEN to compare ENV_A with itself")
        return EXIT_ERROR
    with _store(args) as store:
        if store is None:
            return EXIT_ERROR
        a = manifests.latest(store, args.env_a)
        if a is None:
            return _none_yet(store, args.env_a)
        if args.env_b is not None:
            b, name_a, name_b = manifests.latest(store, args.env_b), args.env_a, args.env_b
            if b is None:
                return _none_yet(store, args.env_b)
        else:
            try:
                when = _when(args.since)
            except ValueError as exc:
                err(str(exc))
                return EXIT_ERROR
            then = manifests.latest(store, args.env_a, at=when)
            if then is None:
                err(f"no manifest of {args.env_a!r} recorded before {args.since}")
                return EXIT_ERROR
            a, b = then, a
            name_a, name_b = f"{args.env_a}@{then['recorded_at']}", f"{args.env_a}@now"
    rows = diff(a, b)
    if args.json:
        print(json.dumps({"a": name_a, "b": name_b, "services": rows}, indent=2))
    else:
        for line in diff_lines(rows, name_a, name_b):
            print(line)
    return EXIT_OK


def _when(value: str) -> datetime:
    from controlplane.durations import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r} is neither a look-back (7d, 12h) nor an ISO "
                         "time (2026-12-01T00:00:00Z)") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
