"""`restore secrets BACKUP_ID …`: plan (dry-run) or apply a Kubernetes Secrets restore.

Lines are ``create NS/NAME``, ``update NS/NAME (keys: a, b)``, ``unchanged NS/NAME``,
``skip NS/NAME (exists; use --overwrite)``; key names only, never a value. Without
``--dry-run`` the same plan is applied, each line says what happened, and the run is
recorded in the store (``restore history``). Exit 0 when
everything planned was done (or nothing needed doing), 1 on conflicts or missing
namespaces, 2 when the backup is refused or the API cannot be used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err
from controlplane.commands.core import load_or_report

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger(__name__)


def register(sub: Sub) -> None:
    restore = sub.choices.get("restore")
    if restore is None:  # the backup commands own `restore`; add it if they do not
        restore = sub.add_parser("restore", help="restore a backup")
        restore.add_subparsers(dest="restore_command", metavar="KIND", required=True)
    rsub = next(a for a in restore._actions if isinstance(a, argparse._SubParsersAction))
    p: argparse.ArgumentParser = rsub.add_parser(
        "secrets", help="restore Kubernetes Secrets from a kubernetes-secrets backup")
    p.add_argument("backup_id")
    p.add_argument("--namespace-map", action="append", default=[], metavar="OLD:NEW",
                   help="restore the Secrets of namespace OLD into NEW (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="NS/NAME",
                   help="only this Secret, by its namespace in the backup (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="only print the plan")
    p.add_argument("--overwrite", action="store_true", help="update Secrets that differ")
    p.add_argument("--create-namespace", action="store_true",
                   help="create missing target namespaces (needs create on namespaces)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--identity", metavar="FILE", help="age key file of the backup's recipient")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="cluster credentials (default: in-cluster when run in a pod, else "
                        "$KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.set_defaults(handler=cmd_restore_secrets)
    h: argparse.ArgumentParser = rsub.add_parser(
        "history", help="applied Secrets restores, newest first, with what each did per Secret")
    h.add_argument("--backup", metavar="BACKUP_ID", help="only restores of this backup")
    h.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    h.add_argument("--json", action="store_true", help="print JSON")
    h.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    h.set_defaults(handler=cmd_restore_history)


def _mapping(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition(":")
        if not sep or not old or not new:
            raise ValueError(f"--namespace-map {pair!r}: write it as OLD:NEW")
        out[old] = new
    return out


def _connection(args: argparse.Namespace) -> Any:
    from controlplane.k8s.client import ClusterConnection

    if args.kubeconfig:
        return ClusterConnection(kubeconfig=args.kubeconfig, context=args.context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return ClusterConnection(in_cluster=True)
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return ClusterConnection(kubeconfig=path, context=args.context)


def find_component(store: Any, cfg: Any, backup_id: str) -> str:
    """The kubernetes-secrets component that cataloged ``backup_id`` (any name: the
    configured components of that kind, or a catalog row whose manifest says so)."""
    from controlplane.backups.catalog import BackupRow, backups
    from controlplane.backups.k8s_secrets import BackupRefused
    from controlplane.dr.k8s_drill import secrets_components

    configured = secrets_components(cfg.backups)
    with store.session() as s:
        row = s.get(BackupRow, backup_id)
        kind = str((row.manifest or {}).get("kind", "")) if row is not None else ""
        component = row.component if row is not None else ""
        if row is None:
            cataloged = {r.component for r in backups(s, limit=5000)
                         if (r.manifest or {}).get("kind") == "kubernetes-secrets"}
    if row is not None and (component in configured or kind == "kubernetes-secrets"):
        return component
    if row is not None:
        comp_kind = kind or (cfg.backups.components[component].kind
                             if component in cfg.backups.components else "unknown")
        raise BackupRefused(f"backup {backup_id} belongs to component {component} (kind "
                            f"{comp_kind}), not to a kubernetes-secrets component")
    names = sorted(set(configured) | cataloged)
    listed = ", ".join(names) if names else "none configured or cataloged"
    raise BackupRefused(f"no kubernetes-secrets backup {backup_id!r} in the catalog; "
                        f"kubernetes-secrets components: {listed} (see `controlplane backup "
                        "list NAME`)")


def cmd_restore_secrets(args: argparse.Namespace) -> int:
    from controlplane.backups.blob import open_blob_store
    from controlplane.backups.k8s_secrets import BackupRefused, load
    from controlplane.k8s import restore, restore_log
    from controlplane.k8s.client import Kube, KubeError
    from controlplane.results import utcnow
    from controlplane.store import Store

    try:
        mapping = _mapping(args.namespace_map)
    except ValueError as exc:
        err(str(exc))
        return EXIT_ERROR
    if not args.identity:
        err("--identity FILE is needed: the age key of the backup's recipient")
        return EXIT_ERROR
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    store = Store(cfg.store.dsn)
    started = utcnow()
    options = {"namespace_map": mapping, "only": list(args.only), "overwrite": args.overwrite,
               "create_namespace": args.create_namespace}
    done_so_far: list[Any] = []
    component, server = "", ""
    try:
        component = find_component(store, cfg, args.backup_id)
        _, items = load(store, open_blob_store(cfg.blob), args.backup_id, args.identity,
                        component)
        items = restore.select(items, args.only)
        with Kube(_connection(args), 30) as kube:
            server = kube.server
            actions = restore.plan(kube, items, mapping, args.overwrite, args.create_namespace)
            if not args.dry_run:
                actions = restore.apply(kube, actions, done_so_far)
    except (BackupRefused, KubeError) as exc:
        if isinstance(exc, KubeError) and not args.dry_run and done_so_far:
            restore_log.record(store, args.backup_id, component, started, server, options,
                               [a.to_json() for a in done_so_far], str(exc))
        store.close()
        err(str(exc))
        return EXIT_ERROR
    restore_id = None
    if not args.dry_run:
        restore_id = restore_log.record(store, args.backup_id, component, started, server,
                                        options, [a.to_json() for a in actions])
    store.close()
    if args.json:
        print(json.dumps({"backup_id": args.backup_id, "component": component,
                          "dry_run": args.dry_run, "restore_id": restore_id,
                          "actions": [a.to_json() for a in actions]}, indent=2))
    else:
        for a in actions:
            print(a.line())
        if restore_id is not None:
            print(f"recorded as restore #{restore_id} (`controlplane restore history`)")
    bad = any(a.verb in ("conflict", "missing-namespace") for a in actions)
    return EXIT_FAILING if bad else EXIT_OK


def cmd_restore_history(args: argparse.Namespace) -> int:
    from controlplane.k8s import restore_log
    from controlplane.store import Store

    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_ERROR
    store = Store(cfg.store.dsn)
    try:
        rows = restore_log.history(store, args.backup, args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"restores": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print("no Secrets restore applied yet")
    for r in rows:
        print(restore_log.summary_line(r))
        for a in r["actions"]:
            print(f"  {a['line'] if a['action'] != 'done' else _done_line(a)}")
    return EXIT_OK


def _done_line(a: dict[str, Any]) -> str:
    keys = f" (keys: {', '.join(a['keys'])})" if a.get("keys") else ""
    return f"done {a['target']}{keys} from {a['source']}"
