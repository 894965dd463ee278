"""``restore.postgres``: a backup into a *new* database, checked against its manifest.

It never writes into an existing database: that is a decision for a human (the runbook's
last step tells them how to switch). Its dry-run shows the diff between the backup's
tables and what the target server holds now.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from controlplane.runbooks.actions.backups import (
    component,
    identities,
    pick_backup,
    progress_fn,
)
from controlplane.runbooks.base import (
    ActionArgs,
    ActionFailed,
    ActionResult,
    StepContext,
    TargetedAction,
)


class RestoreArgs(ActionArgs):
    component: str = Field(description="a key of backups.components")
    backup_id: str = Field(default="latest", description="a backup id, or latest")
    database: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                          description="the new database to create and restore into")


class RestorePostgres(TargetedAction[RestoreArgs]):
    name = "restore.postgres"
    args_model = RestoreArgs
    summary = "restore a backup into a new database and compare row counts with the manifest"
    default_timeout = 6 * 3600.0
    example_args: ClassVar[dict[str, object]] = {"component": "postgres-example",
                                                 "database": "restored_example"}

    def _server(self) -> str:
        from controlplane.dr.cleanup import admin_dsn

        return admin_dsn(component(self.services, self.args.component))

    def describe(self) -> list[str]:
        from controlplane.backups import postgres

        b = pick_backup(self.services, self.args.component, self.args.backup_id)
        server = self._server()
        counts: dict[str, int] = b.manifest.get("row_counts", {})
        lines = [f"restore backup {b.backup_id} ({b.size_bytes} bytes) into the new "
                 f"database {self.args.database}"]
        try:
            exists = self.args.database in postgres.database_names(server, self.args.database)
        except postgres.PgError as exc:
            return [*lines, f"would fail: cannot reach the target server: {exc}"]
        if exists:
            return [*lines, f"would fail: database {self.args.database} already exists; "
                            "restores only go into a new database"]
        lines.append(f"create database {self.args.database} (does not exist yet)")
        lines += [f"  + {t}: {n} rows" for t, n in sorted(counts.items())]
        lines.append(f"then compare the {len(counts)} tables' row counts with the manifest")
        return lines

    def execute(self, ctx: StepContext) -> ActionResult:
        from controlplane.backups import postgres
        from controlplane.backups.restore import RestoreFailed, restore

        b = pick_backup(self.services, self.args.component, self.args.backup_id)
        ids = identities(self.services, self.args.component)
        server = self._server()
        target = postgres.with_dbname(server, self.args.database)
        try:
            postgres.create_database(server, self.args.database, None)
        except postgres.PgError as exc:
            raise ActionFailed(f"{exc}; restores only go into a new database") from None
        t0 = time.monotonic()
        try:
            n = restore(self.services.backup_ops().blob, b.manifest, ids, target,
                        progress=progress_fn(ctx))
        except RestoreFailed as exc:
            raise ActionFailed(f"restore failed: {exc} (database {self.args.database} left "
                               "for inspection)", {"database": self.args.database}) from None
        restore_s = round(time.monotonic() - t0, 3)
        outputs = self._compare(target, b.manifest)
        outputs.update(database=self.args.database, backup_id=b.backup_id, bytes=n,
                       restore_s=restore_s)
        if outputs["mismatches"]:
            raise ActionFailed("row counts differ from the manifest: "
                               + "; ".join(outputs["mismatches"]), outputs)
        return ActionResult(f"{b.backup_id} restored into {self.args.database} ({n} bytes, "
                            f"{len(outputs['row_counts'])} tables, row counts match the "
                            f"manifest) in {restore_s:g}s", outputs)

    @staticmethod
    def _compare(target: str, manifest: dict[str, Any]) -> dict[str, Any]:
        from controlplane.backups import postgres

        want: dict[str, int] = dict(manifest.get("row_counts", {}))
        with postgres.connect(target, autocommit=True) as conn:
            got = postgres.count_rows(conn, postgres.table_names(conn))
        mismatches = [f"{t}: {got.get(t)} rows, the manifest says {n}"
                      for t, n in sorted(want.items()) if got.get(t) != n]
        mismatches += [f"{t}: not in the manifest" for t in sorted(set(got) - set(want))]
        return {"row_counts": got, "mismatches": mismatches}
