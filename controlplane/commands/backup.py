"""`backup run|list|verify|prune`, `restore postgres`, `drill run`.

Long work shows progress (bytes and rate) on stderr; results go to stdout. Backups and
drills feed their Results to the pipeline, so the CLI opens incidents like the scheduler.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    backup = sub.add_parser("backup", help="run, list, verify and prune backups")
    bsub = backup.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    p = _add(bsub, "run", "back up one component now", cmd_backup_run)
    p.add_argument("component", help="a key of backups.components in the config")
    p = _add(bsub, "list", "list backups (newest first)", cmd_backup_list)
    p.add_argument("component", nargs="?", help="only this component")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _add(bsub, "verify", "download, check sha256 and decrypt without restoring",
             cmd_backup_verify)
    p.add_argument("backup_id")
    p.add_argument("--identity", metavar="FILE", help="age key file (default: the "
                   "component's identity_file)")
    p = _add(bsub, "prune", "delete backups outside the retention rules", cmd_backup_prune)
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")

    restore = sub.add_parser("restore", help="restore a backup into a database")
    rsub = restore.add_subparsers(dest="restore_command", metavar="KIND", required=True)
    p = _add(rsub, "postgres", "restore a Postgres backup", cmd_restore_postgres)
    p.add_argument("backup_id")
    p.add_argument("--into", required=True, metavar="DSN", help="target database DSN")
    p.add_argument("--force", action="store_true",
                   help="restore into a non-empty database (drops objects it replaces)")
    p.add_argument("--identity", metavar="FILE", help="age key file")
    from controlplane.commands.restore_kafka import add_arguments, cmd_restore_kafka

    add_arguments(_add(rsub, "kafka", "restore a kafka-metadata backup into an empty cluster",
                       cmd_restore_kafka))

    drill = sub.add_parser("drill", help="restore drills")
    dsub = drill.add_subparsers(dest="drill_command", metavar="ACTION", required=True)
    p = _add(dsub, "run", "restore the newest backup into a scratch database and verify it",
             cmd_drill_run)
    p.add_argument("component")


def _add(sub: Sub, name: str, help_: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_)
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=handler)
    return p


@contextmanager
def _ops(args: argparse.Namespace) -> Iterator[Any]:
    cfg = load_or_report(args.config)
    if cfg is None:
        raise SystemExit(EXIT_ERROR)
    from controlplane.app import build_runtime
    from controlplane.dr.component import ops_for

    runtime = build_runtime(cfg)
    try:
        yield ops_for(runtime)
    finally:
        runtime.stop(0)


def _progress(args: argparse.Namespace) -> Any:
    from controlplane.backups.streams import StderrProgress

    return None if args.quiet else StderrProgress()


def _print_result(result: Any, progress: Any) -> int:
    if progress is not None:
        progress.done()
    from controlplane.commands.probe import print_result

    print_result(result, False)
    return int(result.status.exit_code)


def cmd_backup_run(args: argparse.Namespace) -> int:
    with _ops(args) as ops:
        if args.component not in ops.backups.components:
            err(f"no backup component {args.component!r}; configured: "
                + (", ".join(sorted(ops.backups.components)) or "none"))
            return EXIT_ERROR
        progress = _progress(args)
        return _print_result(ops.run_backup(args.component, progress), progress)


def cmd_drill_run(args: argparse.Namespace) -> int:
    with _ops(args) as ops:
        if args.component not in ops.backups.components:
            err(f"no backup component {args.component!r}; configured: "
                + (", ".join(sorted(ops.backups.components)) or "none"))
            return EXIT_ERROR
        from controlplane.dr.component import warn_if_drills_restore_on_source

        warn_if_drills_restore_on_source(args.component, ops.backups.components[args.component])
        progress = _progress(args)
        return _print_result(ops.run_drill(args.component, progress, on_demand=True), progress)


def cmd_backup_list(args: argparse.Namespace) -> int:
    from controlplane.backups import catalog
    from controlplane.backups.streams import human_bytes

    with _ops(args) as ops, ops.store.session() as s:
        rows = [r.to_dict() for r in catalog.backups(s, args.component)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'ID':<48} {'STATUS':<9} {'STARTED':<21} {'SIZE':>10} {'DURATION':>9}  VERIFIED")
    for r in rows:
        dur = f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-"
        line = (f"{r['id']:<48} {r['status']:<9} {str(r['started_at'])[:20]:<21} "
                f"{human_bytes(r['size_bytes']):>10} {dur:>9}  {r['verified_at'] or '-'}")
        if r["status"] == catalog.FAILED:
            line += f"\n    failed at {r['failed_step']}: {r['error']}"
        print(line)
    return EXIT_OK


@dataclass
class _Backup:
    """What verify and restore need of a complete backup's catalog row."""

    manifest: dict[str, Any]
    component: str
    manifest_name: str
    manifest_sha256: str | None


def _complete_backup(ops: Any, backup_id: str) -> _Backup | None:
    from controlplane.backups import catalog

    with ops.store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        if row is None or row.status != catalog.COMPLETE:
            state = "unknown" if row is None else row.status
            err(f"backup {backup_id!r} is {state}, not complete; `controlplane backup list` "
                "shows complete backups")
            return None
        return _Backup(dict(row.manifest), row.component, row.manifest_name,
                       row.manifest_sha256)


def _identities(ops: Any, component: str, given: str | None) -> list[Any] | None:
    from controlplane.backups.crypto import CryptoError, load_identities

    comp = ops.backups.components.get(component)
    path = given or (comp.identity_file if comp is not None else None)
    if not path:
        err(f"no age key: pass --identity FILE or set backups.components.{component}."
            "identity_file")
        return None
    try:
        return load_identities(path)
    except CryptoError as exc:
        err(str(exc))
        return None


def _backup_and_identities(ops: Any,
                           args: argparse.Namespace) -> tuple[_Backup, list[Any]] | None:
    """The backup's catalog data and the age identities that open it; None (reported) if
    either cannot be had."""
    found = _complete_backup(ops, args.backup_id)
    if found is None:
        return None
    ids = _identities(ops, found.component, args.identity)
    return None if ids is None else (found, ids)


def cmd_backup_verify(args: argparse.Namespace) -> int:
    from controlplane.backups.restore import VerificationFailed, check_manifest, verify

    with _ops(args) as ops:
        keyed = _backup_and_identities(ops, args)
        if keyed is None:
            return EXIT_ERROR
        backup, ids = keyed
        progress = _progress(args)
        try:
            checked = check_manifest(ops.blob, backup.manifest_name, backup.manifest,
                                     backup.manifest_sha256)
            report = verify(ops.blob, backup.manifest, ids, progress)
        except VerificationFailed as exc:
            _done(progress)
            if exc.corrupt:
                from controlplane.backups import catalog

                with ops.store.session() as s:
                    catalog.mark_corrupt(s, args.backup_id, str(exc))
            print(f"FAILING  {args.backup_id}  {exc}")
            return EXIT_FAILING
        _done(progress)
        print(f"OK  {args.backup_id}  sha256 {report.sha256} matches; "
              f"{report.encrypted_bytes} bytes decrypt to {report.plain_bytes}; {checked}")
        return EXIT_OK


def _done(progress: Any) -> None:
    if progress is not None:
        progress.done()


def cmd_backup_prune(args: argparse.Namespace) -> int:
    from controlplane.backups import orphans, retention
    from controlplane.backups.streams import human_bytes

    with _ops(args) as ops:
        rules = {n: c.retention for n, c in ops.backups.components.items()}
        decisions = retention.decide(ops.store, rules)
        gone = [d for d in decisions if not d.keep]
        verb = "would delete" if args.dry_run else "deleting"
        for d in decisions:
            mark = "keep  " if d.keep else ("delete" if not args.dry_run else "would delete")
            print(f"{mark:<12} {d.id:<48} {human_bytes(d.size_bytes):>10}  {d.reason}")
        print(f"{verb} {len(gone)} of {len(decisions)} complete backups")
        errors = [] if args.dry_run else retention.prune(ops.store, ops.blob, decisions)
        # After the retention deletes, so only blobs no kept backup names are left to sweep.
        found, list_errors = orphans.find(ops.store, ops.blob, ops.backups.components)
        _print_orphans(found, args.dry_run)
        errors += list_errors
        if not args.dry_run:
            errors += orphans.delete(ops.store, ops.blob, found)
        for e in errors:
            err(e)
        return EXIT_FAILING if errors else EXIT_OK


def _print_orphans(found: list[Any], dry_run: bool) -> None:
    from controlplane.backups.streams import human_bytes

    if not found:
        return
    for o in found:
        mark = "keep" if not o.delete else ("would delete" if dry_run else "delete")
        print(f"{mark:<12} {o.name}  {human_bytes(o.size)}  {o.describe()}")
    verb = "would delete" if dry_run else "deleting"
    print(f"{verb} {sum(o.delete for o in found)} of {len(found)} orphan blobs (no complete "
          "or running backup refers to them)")


def cmd_restore_postgres(args: argparse.Namespace) -> int:
    from controlplane.backups import postgres
    from controlplane.backups.restore import (
        RestoreFailed,
        VerificationFailed,
        check_manifest,
        restore,
        verify,
    )

    with _ops(args) as ops:
        keyed = _backup_and_identities(ops, args)
        if keyed is None:
            return EXIT_ERROR
        backup, ids = keyed
        manifest = backup.manifest
        try:
            tables = postgres.user_tables(args.into)
        except postgres.PgError as exc:
            err(str(exc))
            return EXIT_ERROR
        if tables and not args.force:
            err(f"target database is not empty ({len(tables)} tables, e.g. {tables[0]}); "
                "restore into an empty database, or pass --force to replace the objects "
                "the backup contains")
            return EXIT_ERROR
        progress = _progress(args)
        try:
            check_manifest(ops.blob, backup.manifest_name, manifest, backup.manifest_sha256)
            verify(ops.blob, manifest, ids, progress)
            n = restore(ops.blob, manifest, ids, args.into, clean=bool(tables), progress=progress)
        except (VerificationFailed, RestoreFailed) as exc:
            _done(progress)
            print(f"FAILING  {args.backup_id}  {exc}")
            return EXIT_FAILING
        _done(progress)
        print(f"OK  {args.backup_id} restored into {postgres.dbname_of(args.into)} "
              f"({n} bytes, {len(manifest.get('row_counts', {}))} tables)")
        return EXIT_OK
