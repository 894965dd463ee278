"""``backup.run``, ``backup.verify``, ``drill.run``: the backup jobs as runbook steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from controlplane.runbooks.base import (
    ActionArgs,
    ActionFailed,
    ActionResult,
    Services,
    StepContext,
    TargetedAction,
    job_result,
)


class ComponentArgs(ActionArgs):
    component: str = Field(description="a key of backups.components")


class VerifyArgs(ComponentArgs):
    backup_id: str = Field(default="latest", description="a backup id, or latest (the "
                                                         "newest complete backup)")


@dataclass
class PickedBackup:
    backup_id: str
    manifest: dict[str, Any]
    manifest_name: str
    manifest_sha256: str | None
    size_bytes: int


def component(services: Services, name: str) -> Any:
    comps = services.config.backups.components
    if name not in comps:
        raise ActionFailed(f"no backup component {name!r}; configured: "
                           + (", ".join(sorted(comps)) or "none"))
    return comps[name]


def pick_backup(services: Services, name: str, backup_id: str) -> PickedBackup:
    """The complete backup ``backup_id`` of ``name`` (``latest``: the newest one)."""
    from controlplane.backups import catalog

    component(services, name)
    with services.store.session() as s:
        if backup_id == "latest":
            row = catalog.latest_complete(s, name)
            if row is None:
                raise ActionFailed(f"component {name} has no complete backup; run "
                                   f"`controlplane backup run {name}` first")
        else:
            row = s.get(catalog.BackupRow, backup_id)
            if row is None or row.status != catalog.COMPLETE or row.component != name:
                state = "unknown" if row is None else row.status
                raise ActionFailed(f"backup {backup_id!r} of {name} is {state}, not "
                                   "complete; `controlplane backup list` shows complete ones")
        return PickedBackup(row.id, dict(row.manifest), row.manifest_name,
                            row.manifest_sha256, int(row.size_bytes or 0))


def identities(services: Services, name: str) -> list[Any]:
    from controlplane.backups.crypto import CryptoError, load_identities

    path = component(services, name).identity_file
    if not path:
        raise ActionFailed(f"no age key to decrypt with: set backups.components.{name}."
                           "identity_file")
    try:
        return load_identities(path)
    except CryptoError as exc:
        raise ActionFailed(str(exc)) from None


def progress_fn(ctx: StepContext) -> Any:
    """A backups ProgressFn feeding the step's live progress; raising stops the job."""
    def report(phase: str, done: int) -> None:
        if ctx.cancelled.is_set():
            raise ActionFailed(f"stopped during {phase}")
        ctx.progress(phase=phase, bytes=done)

    return report


class ComponentAction(TargetedAction[ComponentArgs]):
    """An action on one backup component, which must be configured."""

    def validate(self) -> None:
        component(self.services, self.args.component)


class BackupRun(ComponentAction):
    name = "backup.run"
    args_model = ComponentArgs
    summary = "take an encrypted backup of a component now"
    default_timeout = 6 * 3600.0
    example_args: ClassVar[dict[str, object]] = {"component": "postgres-example"}

    def describe(self) -> list[str]:
        comp = component(self.services, self.args.component)
        return [f"back up {self.args.component} ({comp.kind}, env {comp.env}): dump, "
                f"age-encrypt to {len(comp.recipients)} recipient(s), upload to blob, "
                "write the manifest and the catalog row"]

    def execute(self, ctx: StepContext) -> ActionResult:
        result = self.services.backup_ops().run_backup(self.args.component, progress_fn(ctx))
        return job_result(result, "backup failed", backup_id=result.details.get("backup_id"))


class BackupVerify(TargetedAction[VerifyArgs]):
    name = "backup.verify"
    args_model = VerifyArgs
    summary = "download a backup, check its sha256 and decrypt it fully (nothing written)"
    resumable: ClassVar[bool] = True
    default_timeout = 3600.0
    example_args: ClassVar[dict[str, object]] = {"component": "postgres-example"}

    def describe(self) -> list[str]:
        b = pick_backup(self.services, self.args.component, self.args.backup_id)
        tables = b.manifest.get("row_counts", {})
        return [f"verify backup {b.backup_id} ({b.size_bytes} bytes, {len(tables)} tables): "
                "manifest sha256 against the catalog, blob sha256 and size against the "
                "manifest, full age decryption; nothing is written"]

    def planned_outputs(self) -> dict[str, Any]:
        try:
            b = pick_backup(self.services, self.args.component, self.args.backup_id)
        except ActionFailed:
            return {}
        return {"backup_id": b.backup_id, "row_counts": dict(b.manifest.get("row_counts", {}))}

    def execute(self, ctx: StepContext) -> ActionResult:
        from controlplane.backups.restore import VerificationFailed, check_manifest, verify

        b = pick_backup(self.services, self.args.component, self.args.backup_id)
        ids = identities(self.services, self.args.component)
        blob = self.services.backup_ops().blob
        try:
            checked = check_manifest(blob, b.manifest_name, b.manifest, b.manifest_sha256)
            report = verify(blob, b.manifest, ids, progress_fn(ctx))
        except VerificationFailed as exc:
            raise ActionFailed(str(exc), {"backup_id": b.backup_id}) from None
        return ActionResult(
            f"{b.backup_id}: sha256 matches, {report.encrypted_bytes} bytes decrypt to "
            f"{report.plain_bytes}; {checked}",
            {"backup_id": b.backup_id, "sha256": report.sha256,
             "encrypted_bytes": report.encrypted_bytes, "plain_bytes": report.plain_bytes,
             "row_counts": dict(b.manifest.get("row_counts", {}))})


class DrillRun(ComponentAction):
    name = "drill.run"
    args_model = ComponentArgs
    summary = "restore drill: newest backup into a scratch database, checked and dropped"
    default_timeout = 6 * 3600.0
    example_args: ClassVar[dict[str, object]] = {"component": "postgres-example"}

    def describe(self) -> list[str]:
        b = pick_backup(self.services, self.args.component, "latest")
        return [f"drill {self.args.component}: verify {b.backup_id}, restore it into a "
                "scratch database, compare row counts with the manifest, run the SQL "
                "assertions, drop the scratch database; the duration is the measured RTO"]

    def execute(self, ctx: StepContext) -> ActionResult:
        result = self.services.backup_ops().run_drill(self.args.component, progress_fn(ctx),
                                                      on_demand=True)
        return job_result(result, "drill failed")
