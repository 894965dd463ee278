"""`db upgrade` and `db current`: the store's schema, through the migrations."""

from __future__ import annotations

import argparse

from controlplane.cli import EXIT_ERROR, EXIT_OK, err


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the store's schema (migrations)")
    dsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = dsub.add_parser("upgrade", help="bring the store's schema to this release's newest "
                        "revision (`run` and `demo` do it at start)")
    _args(p)
    p.set_defaults(handler=cmd_upgrade)
    p = dsub.add_parser("current", help="print the store's schema revision and this "
                        "release's newest")
    _args(p)
    p.set_defaults(handler=cmd_current)
    p = dsub.add_parser("revision", help="(developers) write the next migration from what "
                        "the features' tables have that the newest revision lacks")
    p.add_argument("-m", "--message", required=True, help="what the revision changes")
    p.set_defaults(handler=cmd_revision)


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--dsn", help="the store's DSN instead of the config's store.dsn")


def _dsn(args: argparse.Namespace) -> str | None:
    if args.dsn:
        return str(args.dsn)
    from controlplane.commands.core import load_or_report

    cfg = load_or_report(args.config)
    return None if cfg is None else cfg.store.dsn


def cmd_upgrade(args: argparse.Namespace) -> int:
    dsn = _dsn(args)
    if dsn is None:
        return EXIT_ERROR
    from controlplane.store import migrate
    from controlplane.store.db import Store, StoreUnavailable

    try:
        store = Store(dsn, upgrade=False)
    except StoreUnavailable as exc:
        err(str(exc))
        return EXIT_ERROR
    try:
        before, after = migrate.upgrade(store.engine)
    finally:
        store.close()
    where = store.engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{where}: already at revision {after} (the newest)")
    else:
        print(f"{where}: upgraded from revision {before or 'none'} to {after} (the newest)")
    return EXIT_OK


def cmd_current(args: argparse.Namespace) -> int:
    dsn = _dsn(args)
    if dsn is None:
        return EXIT_ERROR
    from controlplane.store import migrate
    from controlplane.store.db import Store, StoreUnavailable

    try:
        store = Store(dsn, upgrade=False)
    except StoreUnavailable as exc:
        err(str(exc))
        return EXIT_ERROR
    try:
        rev = migrate.current(store.engine)
    finally:
        store.close()
    print(f"revision {rev or 'none'} (newest: {migrate.head()})")
    return EXIT_OK


def cmd_revision(args: argparse.Namespace) -> int:
    from controlplane.features import table_metadata
    from controlplane.store import migrate

    path = migrate.new_revision(args.message, table_metadata())
    print(f"wrote {path}; read it, complete what autogenerate cannot see (renames, data), "
          "and add a test in tests/store/test_migrate.py")
    return EXIT_OK
