"""The on-call feature creates its own tables on whichever store it is handed, so the
store needs to know nothing about on-call (``create_all`` also picks them up once these
modules are imported)."""

from __future__ import annotations

import threading
import weakref

from sqlalchemy import Engine, Table

from controlplane.store import Store

_ready: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def ensure(store: Store, table: Table) -> None:
    """Create ``table`` on ``store`` if it is not there yet (checked once per engine)."""
    with _lock:
        done = _ready.setdefault(store.engine, set())
        if table.name in done:
            return
        table.create(store.engine, checkfirst=True)
        done.add(table.name)
