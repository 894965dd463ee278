"""What /readyz answers: can this instance do its job right now?

``SELECT 1`` is not enough: a full disk, a read-only file system or a database file deleted
under the process all answer reads while every write fails (or, for a deleted SQLite file,
goes to a file nobody will ever open again). So readiness looks at what the process really
did: the newest result write, how long since one succeeded, whether the SQLite file is still
the one we opened, the scheduler, the outbox worker threads and leadership.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.store import Store


@dataclass
class WriteHealth:
    """Outcome of the newest store write attempt and when one last succeeded."""

    started: float = field(default_factory=time.monotonic)
    last_ok: float | None = None
    last_failed: bool = False
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def succeeded(self) -> None:
        with self._lock:
            self.last_ok, self.last_failed, self.last_error = time.monotonic(), False, ""

    def failed(self, error: str) -> None:
        with self._lock:
            self.last_failed, self.last_error = True, error

    def problem(self, max_age: float) -> str | None:
        """Why writes are not healthy, or None."""
        with self._lock:
            if self.last_failed:
                return f"the newest store write failed: {self.last_error}"
            since = self.last_ok if self.last_ok is not None else self.started
            age = time.monotonic() - since
        if age > max_age:
            if self.last_ok is None:
                return (f"no store write succeeded since start {age:.0f}s ago (limit "
                        f"store.max_write_age {max_age:g}s)")
            return (f"the last successful store write was {age:.0f}s ago (limit "
                    f"store.max_write_age {max_age:g}s)")
        return None


def sqlite_identity(store: Store) -> tuple[str, int, int] | None:
    """(path, device, inode) of a file-backed SQLite store, None for anything else."""
    url = store.engine.url
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_dev, st.st_ino)


def _file_problem(identity: tuple[str, int, int] | None) -> str | None:
    if identity is None:
        return None
    path, dev, ino = identity
    try:
        st = os.stat(path)
    except OSError:
        return f"the SQLite file {path} was deleted; writes go nowhere (restart to recreate it)"
    if (st.st_dev, st.st_ino) != (dev, ino):
        return f"the SQLite file {path} was replaced; this process still writes the old one"
    return None


def report(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body /readyz answers)."""
    problems: list[str] = []
    store_ok = rt.store.ping()
    if not store_ok:
        problems.append("the store does not answer SELECT 1")
    file_problem = _file_problem(rt.sqlite_file)
    if file_problem:
        problems.append(file_problem)
    role = rt.role
    active = role == "active"
    write_problem = rt.pipeline.write_health.problem(_max_write_age(rt)) if active else None
    if write_problem:
        problems.append(write_problem)
    sched_ok = rt.scheduler.running
    if active and not sched_ok:
        problems.append("the scheduler is not running")
    outbox_ok = _outbox_alive(rt)
    if active and not outbox_ok:
        problems.append("an outbox worker thread has died; notifications are not sent")
    if role == "stopped" or rt.leadership_lost:
        problems.append("this instance is stopping (or lost leadership)")
    body = {"status": "unavailable" if problems else "ok", "store": store_ok,
            "store_writes": write_problem is None and file_problem is None,
            "scheduler": sched_ok, "outbox": outbox_ok, "role": role, "problems": problems}
    return not problems, body


def _max_write_age(rt: Runtime) -> float:
    # A run writes a result every interval: allow at least three intervals of the
    # most frequent check, and never write-age a config without checks.
    intervals = [c.interval for c in rt.config.checks if c.enabled]
    if not intervals:
        return float("inf")
    return max(rt.config.store.max_write_age, 3 * min(intervals))


def _outbox_alive(rt: Runtime) -> bool:
    component: Any = rt.component("incidents")
    worker = getattr(component, "worker", None)
    threads = getattr(worker, "_threads", None) or []
    # Threads exist only once started (on the active instance); all must still run.
    return all(t.is_alive() for t in threads)
