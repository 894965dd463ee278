"""Restore drills: prove the newest complete backup restores, and time it (measured RTO).

Steps: pick -> verify (download, sha256, full age decryption; nothing written) ->
create scratch database -> restore (stream into pg_restore) -> check (row counts equal the
manifest, SQL assertions) -> drop. The scratch database is dropped whatever happens.

:class:`StepDrill` is the step runner the drills of every backup kind share (row, failure,
crash, clean-up, verified mark, Result); :class:`Drill` is the postgres drill on top of it,
controlplane/dr/kafka_drill.py and controlplane/dr/k8s_drill.py the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.backups import catalog, postgres
from controlplane.backups.blob import BlobStore
from controlplane.backups.catalog import BackupRow, DrillRow
from controlplane.backups.config import BackupComponentConfig, BackupsConfig, SqlAssertion
from controlplane.backups.crypto import CryptoError, load_identities
from controlplane.backups.restore import (
    RestoreFailed,
    VerificationFailed,
    check_manifest,
    restore,
    verify,
)
from controlplane.backups.streams import ProgressFn
from controlplane.dr import cleanup
from controlplane.results import Result, Status, Step, StepFailed, StepRecorder, utcnow
from controlplane.sentry import capture
from controlplane.store import Store

log = logging.getLogger(__name__)


def drill_check_id(component: str) -> str:
    return f"drill-{component}"


@dataclass
class DrillOutcome:
    drill_id: int
    result: Result


class Watchdog:
    """Stops what the drill is waiting on (pg_restore, a check query) at its deadline.

    A blocked call can only be ended from another thread: past the deadline the timer
    thread stops the registered target, again every half second until the drill ends (a
    query that starts just after a cancel must not escape it); the blocked step then fails
    and ``fired`` lets the drill name the real cause.
    """

    def __init__(self, timeout: float) -> None:
        self.fired = threading.Event()
        self.stopped = ""
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._target: tuple[str, Callable[[], None]] | None = None
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._done.set()
        self._timer.cancel()

    def watch(self, what: str, stop: Callable[[], None]) -> None:
        with self._lock:
            self._target = (what, stop)

    def unwatch(self) -> None:
        with self._lock:
            self._target = None

    def _fire(self) -> None:
        self.fired.set()
        while True:
            with self._lock:
                target = self._target
            if target is not None:
                self._stop(*target)
            if self._done.wait(0.5):
                return

    def _stop(self, what: str, stop: Callable[[], None]) -> None:
        self.stopped = what
        try:
            stop()
        except Exception:
            log.warning("drill watchdog could not stop %s", what, exc_info=True)


class StepDrill:
    """The step runner every backup kind's drill shares.

    A subclass writes :meth:`steps` (each one a ``with self.rec.step(NAME)`` block that
    raises StepFailed to stop the drill) and, when it leaves something behind, :meth:`clean_up`
    (run whatever happened, before the drill row is finished). This class records the drill
    row, turns StepFailed and crashes into a failed drill naming the step, marks the backup
    verified when the drill passes and builds the Result; its duration is the measured RTO.
    """

    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None = None, on_demand: bool = False) -> None:
        if name not in backups.components:
            known = ", ".join(sorted(backups.components)) or "none configured"
            raise KeyError(f"no backup component {name!r} (configured: {known})")
        self.name = name
        self.cfg: BackupComponentConfig = backups.components[name]
        self.store = store
        self.blob = blob
        self.progress = progress
        self.started = utcnow()
        self.rec = StepRecorder()
        self.backup_id = ""
        self.restore_s: float | None = None
        self.passed_detail = "restored and verified"
        """What a passing drill did, after the backup id in its message."""
        self.details: dict[str, Any] = {}
        """Extra fields of the Result's details (the scratch place, counts)."""
        with store.session() as s:
            row = DrillRow(component=name, status=catalog.RUNNING, started_at=self.started,
                           scratch_db=self.scratch_name(row_id=None), on_demand=on_demand)
            s.add(row)
            s.flush()
            self.drill_id = row.id
            # The id keeps two drills in one second apart.
            self.scratch = row.scratch_db = self.scratch_name(row_id=row.id)

    def pick_latest(self) -> BackupRow:
        """The "pick" step: the newest complete backup, recorded on the drill row."""
        with self.rec.step("pick") as st:
            with self.store.session() as s:
                row = catalog.latest_complete(s, self.name)
                if row is None:
                    raise StepFailed(f"no complete backup of {self.name} to drill; run "
                                     f"`controlplane backup run {self.name}` first")
                self.backup_id = row.id
                s.get(DrillRow, self.drill_id).backup_id = row.id  # type: ignore[union-attr]
                s.expunge(row)
            st.message = self.backup_id
        return row

    def scratch_name(self, row_id: int | None) -> str:
        """Where the drill restores to (recorded on its row): a scratch database here."""
        stamp = f"cp_drill_{self.name.replace('-', '_')}_{self.started:%Y%m%d%H%M%S}"
        return stamp if row_id is None else f"{stamp}_{row_id}"

    def steps(self) -> None:
        raise NotImplementedError

    def clean_up(self, status: Status, step: str) -> None:
        """After the steps, whatever happened (drop the scratch copy); record it as a step."""

    def failure(self, error: str) -> str:
        """The failed drill's error from its StepFailed (a subclass may name a deeper cause)."""
        return error

    def after_steps(self) -> None:
        """Right after the steps, before clean_up (stop timers)."""

    def run(self) -> DrillOutcome:
        t0 = time.monotonic()
        status, step, error = Status.OK, "", ""
        try:
            self.steps()
        except StepFailed as exc:
            status = Status.FAILING
            step = self.rec.steps[-1].name if self.rec.steps else "start"
            error = self.failure(str(exc))
        except Exception as exc:
            capture(exc, drill_check_id(self.name), component=self.name, job="drill")
            log.exception("drill crashed check=%s component=%s", drill_check_id(self.name),
                          self.name)
            status, step, error = Status.FAILING, "crash", f"{type(exc).__name__}: {exc}"
        finally:
            self.after_steps()
        self.clean_up(status, step)
        return self._finish(status, step, error, t0)

    def _finish(self, status: Status, step: str, error: str, t0: float) -> DrillOutcome:
        duration = round(time.monotonic() - t0, 3)
        finished = utcnow()
        steps = [Step.model_validate(s.model_dump()) for s in self.rec.steps]
        with self.store.session() as s:
            row = s.get(DrillRow, self.drill_id)
            assert row is not None
            row.status = catalog.PASSED if status == Status.OK else catalog.FAILED
            row.finished_at, row.duration_s, row.restore_s = finished, duration, self.restore_s
            row.failed_step, row.message = step, error
            row.steps = [st.model_dump(mode="json") for st in steps]
            if status == Status.OK:
                backup = s.get(BackupRow, self.backup_id)
                if backup is not None:
                    backup.verified_at = finished
        if status == Status.OK:
            message = (f"drill of {self.name} passed: {self.backup_id} {self.passed_detail} "
                       f"in {duration:.1f}s")
        else:
            message = f"drill of {self.name} failed at {step}: {error}"
        log.info("drill finished component=%s status=%s step=%s duration_s=%.1f", self.name,
                 status.value, step, duration)
        metrics: dict[str, float | None] = {"duration_s": duration, "restore_s": self.restore_s}
        result = Result(check=drill_check_id(self.name), kind="drill", env=self.cfg.env,
                        status=status, started_at=self.started, duration_s=duration,
                        message=message, metrics=metrics, steps=steps,
                        details={"drill_id": self.drill_id, "backup_id": self.backup_id,
                                 "failed_step": step, **self.details})
        return DrillOutcome(self.drill_id, result)


class Drill(StepDrill):
    """The postgres drill: a scratch database, pg_restore, row counts and assertions."""

    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None = None, on_demand: bool = False) -> None:
        super().__init__(name, backups, store, blob, progress, on_demand)
        self.watchdog = Watchdog(self.cfg.drill.timeout)
        self.created = False
        self.admin = ""

    def steps(self) -> None:
        self.admin = admin = cleanup.admin_dsn(self.cfg)
        cleanup.fail_stale_drills(self.store, self.name, self.cfg.drill.timeout)
        self.watchdog.start()
        manifest, identities = self._pick_and_verify()
        cleanup.try_drop_leftover_scratch(self.store, self.name, admin)
        with self.rec.step("create-scratch") as st:
            self._deadline()
            try:
                postgres.create_database(admin, self.scratch, self.cfg.drill.tablespace)
            except postgres.PgError as exc:
                raise StepFailed(str(exc)) from None
            self.created = True
            st.message = self.scratch
        target = postgres.with_dbname(admin, self.scratch)
        self._restore(manifest, identities, target)
        self._check(manifest, target)

    def failure(self, error: str) -> str:
        # A step stopped by the watchdog reports the timeout, not the kill's side effect.
        last = self.rec.steps[-1]
        last.message = self._timeout_message() or last.message
        return self._timeout_message() or error

    def after_steps(self) -> None:
        self.watchdog.cancel()

    def _deadline(self) -> None:
        """Between steps: a drill past its timeout goes no further."""
        if self.watchdog.fired.is_set():
            raise StepFailed(self._timeout_message())

    def _timeout_message(self) -> str:
        if not self.watchdog.fired.is_set():
            return ""
        stopped = f"; {self.watchdog.stopped} was stopped" if self.watchdog.stopped else ""
        return (f"drill did not finish within {self.cfg.drill.timeout:g}s "
                f"(backups.components.{self.name}.drill.timeout){stopped}")

    def _pick_and_verify(self) -> tuple[dict[str, Any], list[Any]]:
        row = self.pick_latest()
        manifest = dict(row.manifest)
        manifest_name, manifest_sha256 = row.manifest_name, row.manifest_sha256
        with self.rec.step("verify") as st:
            if not self.cfg.identity_file:
                raise StepFailed(f"backups.components.{self.name}.identity_file is not set; "
                                 "drills need the age private key to decrypt")
            try:
                checked = check_manifest(self.blob, manifest_name, manifest, manifest_sha256)
                identities = load_identities(self.cfg.identity_file)
                report = verify(self.blob, manifest, identities, self.progress)
            except (CryptoError, VerificationFailed) as exc:
                if isinstance(exc, VerificationFailed) and exc.corrupt:
                    with self.store.session() as s:
                        catalog.mark_corrupt(s, self.backup_id, str(exc))
                raise StepFailed(f"{exc}; nothing was restored") from None
            st.message = f"{checked}; sha256 ok, {report.plain_bytes} bytes decrypted"
        return manifest, identities

    def _restore(self, manifest: dict[str, Any], identities: list[Any], target: str) -> None:
        with self.rec.step("restore") as st:
            t = time.monotonic()
            try:
                n = restore(self.blob, manifest, identities, target, progress=self.progress,
                            watch=lambda proc: self.watchdog.watch("pg_restore", proc.kill))
            except RestoreFailed as exc:
                raise StepFailed(str(exc)) from None
            finally:
                self.watchdog.unwatch()
            self._deadline()
            self.restore_s = round(time.monotonic() - t, 3)
            st.message = f"{n} bytes restored into {self.scratch}"

    def _check(self, manifest: dict[str, Any], target: str) -> None:
        with self.rec.step("check") as st:
            want: dict[str, int] = dict(manifest.get("row_counts", {}))
            try:
                with postgres.connect(target, autocommit=True) as conn:
                    self.watchdog.watch("the check query", conn.cancel_safe)
                    got = postgres.count_rows(conn, sorted(want))
                    failures = [_assertion(conn, a) for a in self.cfg.drill.assertions]
            except postgres.PgError as exc:
                raise StepFailed(str(exc)) from None
            except Exception as exc:
                raise StepFailed(f"verification query failed: {str(exc).splitlines()[0]}") \
                    from None
            finally:
                self.watchdog.unwatch()
            diffs = [f"{t}: {got.get(t)} rows, manifest says {n}" for t, n in want.items()
                     if got.get(t) != n]
            problems = diffs + [f for f in failures if f]
            if problems:
                raise StepFailed("restored data does not match: " + "; ".join(problems[:5]))
            st.message = (f"{len(want)} tables match the manifest, "
                          f"{len(self.cfg.drill.assertions)} assertions hold")

    def clean_up(self, status: Status, step: str) -> None:
        if not self.created:
            return
        with self.rec.step("drop-scratch") as st:
            try:
                postgres.drop_database(self.admin, self.scratch)
                st.message = self.scratch
            except Exception as exc:
                st.status = Status.DEGRADED
                st.message = f"could not drop {self.scratch}: {exc}; drop it by hand"
                log.warning("scratch drop failed db=%s", self.scratch)


def _assertion(conn: Any, a: SqlAssertion) -> str:
    row = conn.execute(a.sql).fetchone()
    value = row[0] if row else None
    if a.expect is None and value in (None, False):
        return f"assertion {a.name!r} returned {value!r}"
    if a.expect is not None and str(value) != str(a.expect):
        return f"assertion {a.name!r} returned {value!r}, expected {a.expect!r}"
    return ""
