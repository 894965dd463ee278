"""`restore secrets BACKUP_ID …`: plan (dry-run) or apply a Kubernetes Secrets restore.

Lines are ``create NS/NAME``, ``update NS/NAME (keys: a, b)``, ``unchanged NS/NAME``,
``skip NS/NAME (exists; use --overwrite)``; key names only, never a value. Without
``--dry-run`` the same plan is applied and each line says what happened. Exit 0 when
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


def cmd_restore_secrets(args: argparse.Namespace) -> int:
    from controlplane.backups.blob import open_blob_store
    from controlplane.backups.k8s_secrets import BackupRefused, load
    from controlplane.k8s import restore
    from controlplane.k8s.client import Kube, KubeError
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
    try:
        _, items = load(store, open_blob_store(cfg.blob), args.backup_id, args.identity)
        items = restore.select(items, args.only)
        with Kube(_connection(args), 30) as kube:
            actions = restore.plan(kube, items, mapping, args.overwrite, args.create_namespace)
            if not args.dry_run:
                actions = restore.apply(kube, actions)
    except (BackupRefused, KubeError) as exc:
        err(str(exc))
        return EXIT_ERROR
    finally:
        store.close()
    if not args.dry_run:
        done = sum(1 for a in actions if a.verb == "done")
        log.info("secrets restore applied backup_id=%s done=%d total=%d", args.backup_id, done,
                 len(actions))
    if args.json:
        print(json.dumps({"backup_id": args.backup_id, "dry_run": args.dry_run,
                          "actions": [a.to_json() for a in actions]}, indent=2))
    else:
        for a in actions:
            print(a.line())
    bad = any(a.verb in ("conflict", "missing-namespace") for a in actions)
    return EXIT_FAILING if bad else EXIT_OK
