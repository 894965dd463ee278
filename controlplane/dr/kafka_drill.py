"""Kafka drills: ``kafka-recovery`` (restore a kafka-metadata backup into an empty cluster)
and the broker drill (stop one broker of a replicated cluster, time the way back to health).

Both record a drill row of the kafka-metadata component, so the DR tracker's ``kafka``
component takes its measured RTO from whichever ran last and passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from controlplane.backups import catalog, kafka_admin
from controlplane.backups.base import BackupJobLike, BackupKind, DrillLike
from controlplane.backups.blob import BlobStore
from controlplane.backups.config import BackupsConfig
from controlplane.backups.crypto import CryptoError, load_identities
from controlplane.backups.kafka_admin import KafkaMetadataError, connection, isolated
from controlplane.backups.kafka_metadata import KafkaMetadataJob, LoadedBackup, load, restore
from controlplane.backups.kafka_metadata import summary as metadata_summary
from controlplane.backups.restore import VerificationFailed
from controlplane.backups.streams import ProgressFn
from controlplane.dr.drill import StepDrill
from controlplane.results import Status, StepFailed
from controlplane.store import Store

log = logging.getLogger(__name__)

BrokerAction = Callable[[], None]
"""Stops or starts one broker (how depends on where Kafka runs: a test, a pod, a VM)."""


class KafkaRecoveryDrill(StepDrill):
    """pick -> verify (decrypt in memory) -> restore into drill.bootstrap -> check -> clean."""

    loaded: LoadedBackup | None = None

    def steps(self) -> None:
        target = self.cfg.drill.bootstrap
        if not target:
            with self.rec.step("pick"):
                raise StepFailed(f"backups.components.{self.name}.drill.bootstrap is not "
                                 "set; name an EMPTY Kafka cluster to restore into")
        loaded = self.loaded = self._load()
        with self.rec.step("restore") as st:
            try:
                report = restore(loaded, target, progress=self.progress,
                                 security=self.cfg)
            except KafkaMetadataError as exc:
                raise StepFailed(str(exc)) from None
            self.restore_s = report.seconds
            st.message = (f"{report.created['topics']} topics, {report.created['groups']} "
                          f"groups restored into {target}")
        with self.rec.step("check") as st:
            if report.differences:
                raise StepFailed("restored metadata does not match the backup: "
                                 + "; ".join(report.differences[:5]))
            st.message = "topics, configs and committed offsets match the backup"

    def _load(self) -> LoadedBackup:
        row = self.pick_latest()
        manifest, name, sha = dict(row.manifest), row.manifest_name, row.manifest_sha256
        with self.rec.step("verify") as st:
            if not self.cfg.identity_file:
                raise StepFailed(f"backups.components.{self.name}.identity_file is not set; "
                                 "drills need the age private key to decrypt")
            try:
                loaded = load(self.blob, manifest, load_identities(self.cfg.identity_file),
                              name, sha)
            except (CryptoError, VerificationFailed) as exc:
                if isinstance(exc, VerificationFailed) and exc.corrupt:
                    with self.store.session() as s:
                        catalog.mark_corrupt(s, self.backup_id, str(exc))
                raise StepFailed(f"{exc}; nothing was restored") from None
            st.message = f"sha256 ok, {metadata_summary(manifest)} decrypted"
        return loaded

    def clean_up(self, status: Status, step: str) -> None:
        if self.loaded is None or not self.cfg.drill.bootstrap or step in ("pick", "verify"):
            return
        # Leave the scratch cluster empty for the next drill.
        with self.rec.step("clean") as st:
            try:
                isolated(kafka_admin.delete_restored,
                         connection(self.cfg.drill.bootstrap, self.cfg), self.loaded.doc,
                         30.0, timeout=90)
                st.message = "restored topics and groups deleted"
            except KafkaMetadataError as exc:
                st.status = Status.DEGRADED
                st.message = f"could not clean the scratch cluster: {exc}"


class BrokerDrill(StepDrill):
    """Stop one broker, start it again, and time until the cluster is healthy: no
    under-replicated partitions and every group's lag back to its level before the stop
    (its offsets readable again). That time is the ``kafka`` component's measured RTO."""

    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 stop: BrokerAction, start: BrokerAction, down_s: float = 10.0,
                 progress: ProgressFn | None = None, on_demand: bool = True) -> None:
        super().__init__(name, backups, store, blob, progress, on_demand)
        self.stop, self.start = stop, start
        self.down_s = down_s
        self.bootstrap = str(self.cfg.bootstrap)

    def steps(self) -> None:
        with self.rec.step("baseline") as st:
            before = self._health()
            if before["under_replicated"]:
                raise StepFailed(f"{before['under_replicated']} partitions are already "
                                 "under-replicated; the drill starts only on a healthy "
                                 "cluster")
            st.message = f"{len(before['lag'])} groups, lag {before['lag']}"
        t_stop = time.monotonic()
        with self.rec.step("stop-broker") as st:
            self.stop()
            time.sleep(self.down_s)
            st.message = f"broker down for {self.down_s:g}s"
        with self.rec.step("start-broker"):
            self.start()
        with self.rec.step("wait-healthy") as st:
            after = self._wait_healthy(before["lag"])
            st.message = f"under-replicated 0, lag {after['lag']}"
        self.restore_s = round(time.monotonic() - t_stop, 3)

    def _health(self) -> dict[str, Any]:
        try:
            return dict(isolated(kafka_admin.health, connection(self.bootstrap, self.cfg),
                                 10.0, timeout=30))
        except KafkaMetadataError as exc:
            raise StepFailed(str(exc)) from None

    def _wait_healthy(self, baseline: dict[str, int]) -> dict[str, Any]:
        deadline = time.monotonic() + self.cfg.drill.timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                h = dict(isolated(kafka_admin.health, connection(self.bootstrap, self.cfg),
                                  10.0, timeout=30))
            except KafkaMetadataError as exc:
                last = str(exc)
            else:
                behind = {g: n for g, n in h["lag"].items() if n > baseline.get(g, 0)}
                if h["under_replicated"] == 0 and not behind and \
                        set(baseline) <= set(h["lag"]):
                    return h
                last = f"under-replicated {h['under_replicated']}, lag above baseline {behind}"
            time.sleep(1)
        raise StepFailed(f"cluster not healthy within {self.cfg.drill.timeout:g}s: {last}")


class KafkaMetadataKind(BackupKind):
    kind = "kafka-metadata"
    drill_steps = ("pick", "verify", "restore", "check", "clean")

    def summary(self, manifest: dict[str, Any]) -> str:
        return metadata_summary(manifest)

    def job(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
            progress: ProgressFn | None = None) -> BackupJobLike:
        return KafkaMetadataJob(name, backups, store, blob, progress)

    def drill(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
              progress: ProgressFn | None = None, on_demand: bool = False) -> DrillLike:
        return KafkaRecoveryDrill(name, backups, store, blob, progress, on_demand=on_demand)
