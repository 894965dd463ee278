"""`restore kafka BACKUP_ID --bootstrap B [--dry-run]`: a kafka-metadata backup into an
empty cluster, reached with the component's TLS/SASL settings (``tls``, ``ca_file``,
``sasl_*``, as the kafka_* checks take them). The backup is checked and decrypted whole
before anything is written."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from controlplane.cli import EXIT_ERROR, EXIT_FAILING, EXIT_OK, err

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("backup_id")
    p.add_argument("--bootstrap", required=True, metavar="HOST:PORT",
                   help="the EMPTY Kafka cluster to restore into")
    p.add_argument("--dry-run", action="store_true",
                   help="verify the backup and list what would be created; write nothing")
    p.add_argument("--identity", metavar="FILE", help="age key file")


def cmd_restore_kafka(args: argparse.Namespace) -> int:
    from controlplane.backups.kafka_admin import KafkaMetadataError
    from controlplane.backups.kafka_metadata import load, plan, restore
    from controlplane.backups.restore import VerificationFailed
    from controlplane.commands.backup import _backup_and_identities, _ops

    with _ops(args) as ops:
        keyed = _backup_and_identities(ops, args)
        if keyed is None:
            return EXIT_ERROR
        backup, ids = keyed
        try:
            loaded = load(ops.blob, backup.manifest, ids, backup.manifest_name,
                          backup.manifest_sha256)
        except VerificationFailed as exc:
            print(f"FAILING  {args.backup_id}  {exc}; nothing was restored")
            return EXIT_FAILING
        if args.dry_run:
            for line in plan(loaded.doc):
                print(f"would {line}")
            print(f"dry run: nothing was written to {args.bootstrap}")
            return EXIT_OK
        try:
            # The target is reached with the component's TLS/SASL settings.
            report = restore(loaded, args.bootstrap,
                             security=ops.backups.components[backup.component])
        except KafkaMetadataError as exc:
            err(str(exc))
            return EXIT_FAILING
        if report.differences:
            print(f"FAILING  {args.backup_id}  restored metadata does not match: "
                  + "; ".join(report.differences[:5]))
            return EXIT_FAILING
        print(f"OK  {args.backup_id} restored into {args.bootstrap}: "
              f"{report.created['topics']} topics, {report.created['groups']} groups, "
              f"{report.created['acls']} ACLs; topics, configs and offsets match")
        return EXIT_OK
