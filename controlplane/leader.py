"""One active instance per store: the others stand by.

Several ``controlplane run`` instances may share one PostgreSQL store (a rolling deploy, or
a second replica for the dashboard). Only one may run checks, send notifications and take
backups, or every page and ticket would go out twice. The active one holds a PostgreSQL
session advisory lock on a connection of its own; the others serve the web UI and API from
the shared store and try for the lock every ``store.standby_retry``. A lock held by a dead
process is released by PostgreSQL when its connection goes, so a standby takes over within
one retry.

The active instance checks its lock connection as often. Should it be lost (the database
restarted, the network cut), another instance may already have taken over: this one must
stop at once rather than run alongside it, so it calls ``on_lost`` (``controlplane run``
exits non-zero and is restarted as a standby).

SQLite is one process's file: its instance is always active.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from controlplane.store import Store

log = logging.getLogger(__name__)

LOCK_KEY = 3_603_600_001
"""The advisory lock's key: any fixed bigint the platform's own databases do not use."""


class Leadership:
    def __init__(self, store: Store, retry_s: float, on_active: Callable[[], None],
                 on_lost: Callable[[], None]) -> None:
        self.store = store
        self.retry_s = retry_s
        self.on_active = on_active
        self.on_lost = on_lost
        self.active = False
        self._conn: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def shared(self) -> bool:
        """Whether other instances can share this store (PostgreSQL)."""
        return self.store.engine.dialect.name == "postgresql"

    def start(self) -> None:
        """Become active now if possible (then ``on_active`` has run when this returns);
        otherwise stand by and keep trying in the background."""
        if not self.shared or self._try_acquire():
            self._activate()
        else:
            log.warning("standing by: another instance is active on this store; retry_s=%s",
                        self.retry_s)
        if self.shared:
            self._thread = threading.Thread(target=self._loop, name="leadership", daemon=True)
            self._thread.start()

    def _activate(self) -> None:
        self.active = True
        log.info("active: this instance runs the checks, notifications and backups")
        self.on_active()

    def _try_acquire(self) -> bool:
        conn = None
        try:
            # Inside the try: a standby asking while PostgreSQL is down or restarting must
            # keep trying, not lose its leadership thread (it would never take over again).
            conn = self.store.engine.connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": LOCK_KEY}).scalar())
            conn.commit()
        except Exception:
            if conn is not None:
                conn.close()
            log.warning("leadership: could not ask for the lock", exc_info=True)
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _holding(self) -> bool:
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except Exception:
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.retry_s):
            if self.active:
                if not self._holding():
                    log.critical("leadership lost: the store connection holding the lock "
                                 "failed; stopping so two instances never run at once")
                    self.active = False
                    self.on_lost()
                    return
            elif self._try_acquire():
                self._activate()

    def stop_trying(self) -> None:
        """No more attempts or lock checks (the caller is stopping its work)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.retry_s + 5)

    def release(self) -> None:
        """Give the lock up (after the active work has stopped): a standby takes over."""
        self.stop_trying()
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                self._conn.commit()
            except Exception:
                log.warning("leadership: releasing the lock failed (it goes with the "
                            "connection)", exc_info=True)
            finally:
                self._conn.close()
                self._conn = None
        self.active = False
